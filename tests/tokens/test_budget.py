"""The token-budget contract: no-op at 1.0, masks and protected tokens respected, size conserved, finite outputs,
batched == per-sample, schedules, proportional attention, per-modality budgets, random training budgets."""

from __future__ import annotations

import copy

import pytest
import torch

from polymodal.blocks import TransformerBlock
from polymodal.errors import UnknownNameError
from polymodal.tokens import REDUCERS as REGISTRY
from polymodal.tokens import TokenBudget, pool_shape, pool_to, run_stack, schedule_counts
from polymodal.tokens.spec import SizedTokens
from polymodal.tokens.stack import Segment, reduce_sequence
from polymodal.types import Tokens

REDUCERS = REGISTRY.names()  # every registered reducer: a new one is held to this contract the moment it exists


def blocks(n: int = 2, dim: int = 16, seed: int = 0) -> torch.nn.ModuleList:
    torch.manual_seed(seed)
    return torch.nn.ModuleList(TransformerBlock(dim, 4) for _ in range(n)).eval()


def stack(reducer, x, mask, budget=0.5, schedule="first", protected=0, grid=None, cls=False, layers=None, **kw):
    bl = layers if layers is not None else blocks()
    spec = TokenBudget(budget, reducer, schedule=schedule, **kw)
    n = x.shape[1] - protected
    seg = Segment(n, schedule_counts(n, budget, len(bl), schedule, reducer, grid), grid)
    with torch.no_grad():
        return run_stack(bl, x, mask, spec, [seg], protected=protected, cls=cls)


# ------------------------------------------------------------------------------------------------ the spec
def test_spec_validates_with_clear_messages():
    with pytest.raises(ValueError, match="in \\(0, 1\\]"):
        TokenBudget(0.0)
    with pytest.raises(UnknownNameError, match="unknown token reducer 'drop'; choose one of: merge"):
        TokenBudget(0.5, "drop")
    with pytest.raises(ValueError, match="schedule"):
        TokenBudget(0.5, schedule="sometimes")
    with pytest.raises(ValueError, match="ending at 1"):
        TokenBudget(0.5, schedule=(0.5, 0.7))
    assert TokenBudget(1.0).is_noop and not TokenBudget(1.0, train_budgets=(0.5,)).is_noop
    spec = TokenBudget({"image": 0.25, "audio": 0.5})
    assert spec.for_modality("image") == 0.25 and spec.for_modality("text") == 1.0


@pytest.mark.parametrize(
    "schedule,expected",
    [
        ("first", [64, 32, 32, 32, 32]),
        ("input", [32, 32, 32, 32, 32]),
        ("constant", [64, 56, 48, 40, 32]),
        ("decreasing", [64, 51, 42, 35, 32]),
        ((0.5, 1.0, 1.0, 1.0), [64, 48, 32, 32, 32]),
        ((0.25, 0.5, 1.0, 1.0, 1.0), [56, 48, 32, 32, 32]),
    ],
)
def test_schedule_counts(schedule, expected):
    assert schedule_counts(64, 0.5, 4, schedule) == expected


def test_schedule_counts_edge_cases():
    assert schedule_counts(64, 1.0, 3, "constant") == [64] * 4
    assert schedule_counts(10, 0.01, 1, "first") == [10, 1]  # never below one token
    assert schedule_counts(20, 0.5, 0, "first") == [10]  # no blocks: only the input point
    assert schedule_counts(64, 0.5, 2, "input", "prune") == [32, 32, 32]
    # pool: the exact pooled-grid sizes
    assert schedule_counts(49, 0.5, 1, "first", "pool", (7, 7)) == [49, 24]
    assert pool_shape((7, 7), 24) == (4, 6) and pool_shape((7, 7), 25) == (5, 5)
    assert pool_shape((14, 14), 98) == (9, 11) and pool_shape((14, 14), 49) == (7, 7)
    assert pool_shape((1, 30), 7) == (1, 7)


# ------------------------------------------------------------------------------------------- the contract
@pytest.mark.parametrize("reducer", REDUCERS)
def test_budget_one_is_an_exact_noop(reducer):
    x, mask = torch.randn(3, 12, 16), torch.ones(3, 12, dtype=torch.bool)
    bl = blocks()
    with torch.no_grad():
        ref = x
        for b in bl:
            ref = b(ref, mask)
    res = stack(reducer, x, mask, budget=1.0, layers=bl)
    assert torch.equal(res.x, ref) and res.size is None and res.trace == [(12, 12), (12, 12)]


@pytest.mark.parametrize("reducer", REDUCERS)
@pytest.mark.parametrize("schedule", ["first", "constant", "input"])
def test_counts_follow_the_schedule(reducer, schedule):
    x, mask = torch.randn(2, 36, 16), torch.ones(2, 36, dtype=torch.bool)
    res = stack(reducer, x, mask, budget=0.25, schedule=schedule, grid=(6, 6))
    planned = schedule_counts(36, 0.25, 2, schedule, reducer, (6, 6))
    assert [t[1] for t in res.trace] == planned[1:]
    assert res.x.shape[1] == planned[-1]
    assert torch.isfinite(res.x).all()


@pytest.mark.parametrize("reducer", ["merge", "pool", "zip"])
def test_size_is_conserved(reducer):
    """Merge (and pool, and zip's context tokens) account for every real token: sizes sum to the real count."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 20, 16, generator=g)
    mask = torch.ones(4, 20, dtype=torch.bool)
    mask[1, 13:] = False
    mask[3, 5:] = False
    res = stack(reducer, x, mask, budget=0.3, schedule="constant")
    real_size = (res.size * res.mask).sum(1)
    assert torch.allclose(real_size, mask.sum(1).float())
    assert (res.size[~res.mask] == 0).all() or reducer == "merge"  # pool / zip padding weighs nothing


@pytest.mark.parametrize("reducer", REDUCERS)
def test_padding_never_reaches_real_tokens(reducer):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 16, 16, generator=g)
    mask = torch.ones(3, 16, dtype=torch.bool)
    mask[0, 9:] = False
    mask[2, 4:] = False
    garbage = torch.where(mask[..., None], x, 100 * torch.randn(3, 16, 16, generator=g))
    a, b = stack(reducer, x, mask), stack(reducer, garbage, mask)
    assert torch.equal(a.mask, b.mask)
    torch.testing.assert_close(a.x[a.mask], b.x[b.mask], atol=1e-4, rtol=1e-4)
    assert a.mask.sum(1).min() >= 1  # every sample keeps real tokens


@pytest.mark.parametrize("reducer", REDUCERS)
def test_protected_tokens_are_never_reduced(reducer):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3 + 16, 16, generator=g)
    mask = torch.ones(2, 19, dtype=torch.bool)
    mask[1, 1] = False  # a "missing" token that is off for this sample
    spec = TokenBudget(0.25, reducer)
    seg = Segment(16, schedule_counts(16, 0.25, 0, "input", reducer), None)
    metric = x
    scores = torch.softmax(torch.randn(2, 19, generator=g), -1) if REGISTRY.get(reducer).needs_importance else None
    out, m, s = reduce_sequence(spec, x, mask, None, [seg], 0, 3, metric, scores)
    assert torch.equal(out[:, :3], x[:, :3]) and torch.equal(m[:, :3], mask[:, :3])
    assert torch.equal(s[:, :3], torch.ones(2, 3))
    assert out.shape[1] == 3 + 4 and seg.n == 4
    # through whole blocks too: the stream shrinks, the 3 protected tokens stay in front
    res = stack(reducer, x, mask, budget=0.25, protected=3, cls=True)
    assert res.x.shape[1] == 3 + 4 and torch.equal(res.mask[:, :3], mask[:, :3])


@pytest.mark.parametrize("reducer", REDUCERS)
def test_batched_equals_per_sample(reducer):
    """Without padding, a sample's result does not depend on the rest of the batch."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 25, 16, generator=g)
    mask = torch.ones(4, 25, dtype=torch.bool)
    bl = blocks()
    full = stack(reducer, x, mask, grid=(5, 5), layers=bl)
    for i in range(4):
        one = stack(reducer, x[i : i + 1], mask[i : i + 1], grid=(5, 5), layers=bl)
        torch.testing.assert_close(one.x, full.x[i : i + 1], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(one.size, full.size[i : i + 1])


def test_prune_keeps_the_tokens_the_cls_token_attends_to():
    x = torch.randn(1, 1 + 6, 8)
    mask = torch.ones(1, 7, dtype=torch.bool)
    w = torch.zeros(1, 7)
    w[0, 1:] = torch.tensor([0.1, 0.5, 0.0, 0.3, 0.05, 0.05])  # from the [CLS] token
    seg = Segment(6, [2], None)
    out, m, s = reduce_sequence(TokenBudget(0.33, "prune"), x, mask, None, [seg], 0, 1, x, w)
    assert torch.equal(out[0, 1:], x[0, [2, 4]])


def test_query_scores_are_the_attention_rows():
    block = blocks(1)[0]
    x = torch.randn(2, 6, 16)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1, 4:] = False
    with torch.no_grad():
        q, k, _ = block.qkv_heads(block.norm1(x))
        att = ((q @ k.transpose(-1, -2)) / block.head_dim**0.5).masked_fill(~mask[:, None, None], -torch.inf).softmax(-1)
        cls = block.query_scores(q, k, mask, block.attention_bias(mask, None), "cls")
        metric, scores = block.input_scores(x, mask, None, "cls")
    torch.testing.assert_close(cls, att[:, :, 0].mean(1))
    torch.testing.assert_close(scores, cls)
    torch.testing.assert_close(metric, k.mean(1))
    assert (cls[1, 4:] == 0).all()


def test_pool_to_conserves_size_and_keeps_the_grid_layout():
    x = torch.arange(16.0).reshape(1, 16, 1).expand(2, 16, 3).clone()
    t = Tokens(x, torch.ones(2, 16, dtype=torch.bool), torch.ones(2, dtype=torch.bool))
    out, size = pool_to(t, (4, 4), (2, 2))
    assert out.x.shape == (2, 4, 3) and torch.equal(size, torch.full((2, 4), 4.0))
    assert out.x[0, :, 0].tolist() == [2.5, 4.5, 10.5, 12.5]
    same, s1 = pool_to(t, (4, 4), (4, 4))
    assert same is t and torch.equal(s1, torch.ones(2, 16))
    odd, s2 = pool_to(Tokens(x[:, :15], t.mask[:, :15], t.present), (3, 5), (2, 2))
    assert s2.sum(1).tolist() == [15.0, 15.0]


# ------------------------------------------------------------------------------------- proportional attention
def test_proportional_attention_equals_duplicated_tokens():
    """A token of size 2 gets the attention of two copies of itself (ToMe's proportional attention)."""
    block = blocks(1)[0]
    x = torch.randn(2, 4, 16)
    dup = torch.cat([x, x[:, 1:2]], 1)  # token 1 twice
    mask = torch.ones(2, 4, dtype=torch.bool)
    size = torch.tensor([[1.0, 2.0, 1.0, 1.0]]).expand(2, 4)
    with torch.no_grad():
        a, _, _ = block.forward_reduce(x, mask, size)
        b = block(dup, torch.ones(2, 5, dtype=torch.bool))
    torch.testing.assert_close(a, b[:, :4], atol=1e-5, rtol=1e-5)


def test_forward_reduce_without_reduction_matches_forward():
    block = blocks(1)[0]
    x = torch.randn(3, 7, 16)
    mask = torch.rand(3, 7) > 0.3
    mask[:, 0] = True
    with torch.no_grad():
        ref = block(x, mask)
        a, m, s = block.forward_reduce(x, mask)
        b, _, _ = block.forward_reduce(x, mask, importance="mean")
    torch.testing.assert_close(a, ref, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(b, ref, atol=1e-5, rtol=1e-5)
    assert s is None and torch.equal(m, mask)


def test_sized_tokens_pool_by_size_and_keep_size_through_present_changes():
    x = torch.tensor([[[1.0], [4.0]]])
    t = SizedTokens(x, torch.ones(1, 2, dtype=torch.bool), torch.ones(1, dtype=torch.bool), torch.tensor([[3.0, 1.0]]))
    assert t.pooled().item() == pytest.approx(7 / 4)
    assert t.with_present(torch.zeros(1, dtype=torch.bool)).size is t.size


# ------------------------------------------------------------------------------------ whole nets (tiny, random)
@pytest.fixture(scope="module")
def net_and_batch():
    from polymodal.config.model import ModelConfig
    from polymodal.data.schema import ModalitySpec, Schema
    from polymodal.nets.multimodal import MultimodalNet
    from polymodal.registry import Component
    from polymodal.types import Batch

    schema = Schema(
        modalities={
            "image": ModalitySpec("image", "image", ["image"], {"size": [28, 28], "channels": 1}),
            "audio": ModalitySpec("audio", "audio", ["audio"], {"sample_rate": 8000}),
        },
        label="y", task="classify", classes=["a", "b", "c"],
    )
    torch.manual_seed(0)
    net = MultimodalNet(schema, ModelConfig(dim=32, fusion=Component("transformer", {"layers": 2}))).eval()
    g = torch.Generator().manual_seed(0)
    b = 5
    batch = Batch(
        inputs={
            "image": {"pixels": torch.rand(b, 1, 28, 28, generator=g)},
            "audio": {"wave": torch.randn(b, 6000, generator=g) * 0.1, "length": torch.tensor([6000, 4000, 2500, 6000, 900])},
        },
        present={"image": torch.tensor([True, False, True, True, False]), "audio": torch.tensor([True, True, False, True, True])},
    )
    return net, batch


def _with(net, spec):
    from polymodal.tokens import install_token_budget

    net = copy.deepcopy(net)
    install_token_budget(net, spec)
    return net


def test_net_budget_one_is_bit_identical(net_and_batch):
    net, batch = net_and_batch
    with torch.no_grad():
        ref = net(batch).logits
        for reducer in REDUCERS:
            assert torch.equal(_with(net, TokenBudget(1.0, reducer))(batch).logits, ref)


@pytest.mark.parametrize("reducer", REDUCERS)
@pytest.mark.parametrize("where", ["encoder", "fusion"])
def test_net_outputs_finite_with_missing_modalities(net_and_batch, reducer, where):
    net, batch = net_and_batch
    red = _with(net, TokenBudget(0.25, reducer, where=where))
    with torch.no_grad():
        out = red(batch)
    assert torch.isfinite(out.logits).all() and torch.isfinite(out.fusion.pooled).all()
    trace = red.fusion.token_trace if where == "fusion" else red.encoders["image"].token_trace
    assert trace[-1][1] < trace[0][0]
    # absent modalities still change nothing: garbage in an absent sample's input leaves its output alone
    b2 = copy.copy(batch)
    b2.inputs = {"image": {"pixels": batch.inputs["image"]["pixels"].clone()}, "audio": batch.inputs["audio"]}
    b2.inputs["image"]["pixels"][1] = 50.0
    with torch.no_grad():
        torch.testing.assert_close(red(b2).logits[1], out.logits[1], atol=1e-5, rtol=1e-5)


def test_per_modality_budgets_and_fusion_keeps_protected_tokens(net_and_batch):
    net, batch = net_and_batch
    red = _with(net, TokenBudget({"image": 0.25}, "merge", where="fusion"))
    with torch.no_grad():
        out = red(batch)
    n_audio = out.fusion.tokens.x.shape[1] - 3 - 12  # 49 image tokens -> 12
    full_audio = net(batch).fusion.tokens.x.shape[1] - 3 - 49
    assert n_audio == full_audio  # audio has no budget
    assert torch.equal(out.fusion.tokens.mask[:, 1:3], ~torch.stack([batch.present["image"], batch.present["audio"]], 1))


def test_random_training_budgets(net_and_batch):
    from polymodal.tokens.budget import begin_step

    net, batch = net_and_batch
    red = _with(net, TokenBudget(1.0, "pool", train_budgets=(0.5, 0.25)))
    red.train()
    seen = set()
    torch.manual_seed(0)
    for _ in range(8):
        begin_step(red)
        seen.add(red.token_state.sampled)
    assert seen == {0.5, 0.25}
    red.eval()
    with torch.no_grad():
        assert torch.equal(red(batch).logits, net(batch).logits)  # evaluation at the configured budget (1.0)


def test_gradients_flow_through_every_reducer(net_and_batch):
    net, batch = net_and_batch
    for reducer in REDUCERS:
        red = _with(net, TokenBudget(0.5, reducer)).train()
        red(batch).logits.sum().backward()
        p = red.encoders["image"].blocks[0].mlp[0].weight
        assert p.grad is not None and torch.isfinite(p.grad).all()
