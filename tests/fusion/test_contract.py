"""Contract tests run over every registered fusion operator: a new operator is tested here automatically.

The batch has 8 samples over 3 modalities; sample ``b`` has modality ``i`` iff bit ``i`` of ``b`` is set, so every
subset of present modalities (including none) occurs once.
"""

from __future__ import annotations

import pytest
import torch

from polymodal.fusion import FUSIONS
from polymodal.types import FusionOutput, Tokens

NAMES = ["a", "b", "c"]
N_TOKENS = {"a": 5, "b": 1, "c": 7}
DIM = 16
B = 8
PRESENT = {m: torch.tensor([bool(b >> i & 1) for b in range(B)]) for i, m in enumerate(NAMES)}


def make_tokens(g: torch.Generator, b: int = B, present: dict | None = None) -> dict[str, Tokens]:
    present = PRESENT if present is None else present
    out = {}
    for m in NAMES:
        n = N_TOKENS[m]
        x = torch.randn(b, n, DIM, generator=g)
        mask = torch.rand(b, n, generator=g) > 0.4
        mask[:, 0] = True  # encoders guarantee at least one real token
        out[m] = Tokens(x, mask, present[m])
    return out


def build(name: str, **options):
    torch.manual_seed(0)
    return FUSIONS.build(name, NAMES, DIM, **options)


def run(fusion, tokens) -> FusionOutput:
    with torch.no_grad():
        return fusion(tokens)


def assert_same_outputs(a: FusionOutput, b: FusionOutput, rows=slice(None)) -> None:
    torch.testing.assert_close(a.pooled[rows], b.pooled[rows], atol=1e-5, rtol=0)
    for m in NAMES:
        p = PRESENT[m].clone()
        if isinstance(rows, torch.Tensor):
            p &= rows
        torch.testing.assert_close(a.per_modality[m][p], b.per_modality[m][p], atol=1e-5, rtol=0)


names = pytest.mark.parametrize("name", FUSIONS.names())


@names
def test_output_contract(name):
    out = run(build(name).eval(), make_tokens(torch.Generator().manual_seed(1)))
    assert isinstance(out, FusionOutput)
    assert out.pooled.shape == (B, DIM) and out.pooled.dtype == torch.float32
    assert set(out.per_modality) == set(NAMES)
    for m in NAMES:
        assert out.per_modality[m].shape == (B, DIM)
        assert torch.isfinite(out.per_modality[m]).all()
    assert torch.isfinite(out.pooled).all(), "every subset of present modalities (including none) must be finite"
    if out.tokens is not None:
        assert isinstance(out.tokens, Tokens) and out.tokens.x.shape[0] == B and out.tokens.x.shape[2] == DIM
        assert torch.isfinite(out.tokens.x).all()
    if out.aux_loss is not None:
        assert out.aux_loss.dim() == 0 and torch.isfinite(out.aux_loss)


@names
def test_masked_tokens_are_ignored(name):
    fusion = build(name).eval()
    g = torch.Generator().manual_seed(2)
    tokens = make_tokens(g)
    changed = {
        m: Tokens(torch.where(t.mask[..., None], t.x, 100 * torch.randn(t.x.shape, generator=g)), t.mask, t.present)
        for m, t in tokens.items()
    }
    assert_same_outputs(run(fusion, tokens), run(fusion, changed))


@names
def test_absent_modalities_are_ignored(name):
    """Changing everything (values and mask) of a modality a sample lacks changes nothing for that sample."""
    fusion = build(name).eval()
    g = torch.Generator().manual_seed(3)
    tokens = make_tokens(g)
    changed = {}
    for m, t in tokens.items():
        absent = ~t.present
        x = torch.where(absent[:, None, None], 100 * torch.randn(t.x.shape, generator=g), t.x)
        mask = torch.where(absent[:, None], torch.rand(t.mask.shape, generator=g) > 0.5, t.mask)
        changed[m] = Tokens(x, mask, t.present)
    assert_same_outputs(run(fusion, tokens), run(fusion, changed))


@names
def test_batch_independence(name):
    fusion = build(name).eval()
    tokens = make_tokens(torch.Generator().manual_seed(4))
    full = run(fusion, tokens)
    for i in range(B):
        one = run(fusion, {m: Tokens(t.x[[i]], t.mask[[i]], t.present[[i]]) for m, t in tokens.items()})
        torch.testing.assert_close(full.pooled[[i]], one.pooled, atol=1e-5, rtol=0)
        for m in NAMES:
            torch.testing.assert_close(full.per_modality[m][[i]], one.per_modality[m], atol=1e-5, rtol=0)


@names
def test_gradients_reach_every_parameter(name):
    fusion = build(name).train()
    tokens = make_tokens(torch.Generator().manual_seed(5))
    for t in tokens.values():
        t.x.requires_grad_(True)
    out = fusion(tokens)
    loss = out.pooled.square().mean() + out.pooled.sum()
    loss = loss + sum(v.square().mean() + v.sum() for v in out.per_modality.values())
    if out.aux_loss is not None:
        loss = loss + out.aux_loss
    loss.backward()
    for pname, p in fusion.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{pname} got no gradient"
            assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
            assert p.grad.abs().sum() > 0, f"{pname} got an all-zero gradient"
    for m, t in tokens.items():
        g = t.x.grad
        assert g is not None and torch.isfinite(g).all()
        assert g[t.valid].abs().sum() > 0, f"no gradient reaches modality {m}'s real tokens"


@names
def test_deterministic(name):
    tokens = make_tokens(torch.Generator().manual_seed(6))
    a, b = run(build(name).eval(), tokens), run(build(name).eval(), tokens)
    assert torch.equal(a.pooled, b.pooled)
    for m in NAMES:
        assert torch.equal(a.per_modality[m], b.per_modality[m])


@names
def test_single_modality(name):
    fusion = FUSIONS.build(name, ["only"], DIM).eval()
    x = torch.randn(3, 4, DIM)
    tokens = {"only": Tokens(x, torch.ones(3, 4, dtype=torch.bool), torch.tensor([True, False, True]))}
    out = run(fusion, tokens)
    assert out.pooled.shape == (3, DIM) and torch.isfinite(out.pooled).all()


def test_unknown_fusion_names_the_choices():
    with pytest.raises(KeyError, match="late"):
        FUSIONS.get("nope")


def test_late_fusion_is_the_average_of_per_modality_logits():
    fusion = build("late").eval()
    head = torch.nn.Linear(DIM, 5)
    tokens = make_tokens(torch.Generator().manual_seed(7))
    with torch.no_grad():
        out = fusion(tokens)
        logits = head(out.pooled)
        per = torch.stack([head(out.per_modality[m]) for m in NAMES], 1)  # [B, M, K]
    w = torch.stack([PRESENT[m] for m in NAMES], 1).float()
    some = w.sum(1) > 0
    expected = (per * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp_min(1)
    torch.testing.assert_close(logits[some], expected[some], atol=1e-5, rtol=1e-5)
    # A sample with nothing present gets the learned "nothing" vector.
    torch.testing.assert_close(out.pooled[~some], fusion.nothing.expand(int((~some).sum()), -1))


@names
def test_learns_when_the_label_is_in_one_modality(name):
    """Label = sign of a direction in modality 'a' (always present); 'b' and 'c' are noise and sometimes absent."""
    g = torch.Generator().manual_seed(8)
    n = 128
    present = {
        "a": torch.ones(n, dtype=torch.bool),
        "b": torch.rand(n, generator=g) > 0.3,
        "c": torch.rand(n, generator=g) > 0.3,
    }
    tokens = make_tokens(g, n, present)
    direction = torch.randn(DIM, generator=g)
    y = (tokens["a"].pooled() @ direction > 0).long()
    fusion = build(name).train()
    head = torch.nn.Linear(DIM, 2)
    opt = torch.optim.Adam(list(fusion.parameters()) + list(head.parameters()), lr=3e-3)
    losses = []
    for _ in range(100):
        loss = torch.nn.functional.cross_entropy(head(fusion(tokens).pooled), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.4 * losses[0], (losses[0], losses[-10:])


@names
def test_declared_capabilities_hold(name):
    """Capabilities are declared on the class (``Fusion`` declares the defaults) and hold: per-step outputs are
    one state per modality, ``utilisation()`` is None or per-modality fractions, and a fusion that declares
    ``supports_token_budget`` really reduces the streams it is given, with every registered reducer."""
    from polymodal.fusion import Fusion
    from polymodal.tokens import REDUCERS, TokenBudget
    from polymodal.tokens.spec import BudgetState

    fusion = build(name).eval()
    assert isinstance(fusion, Fusion)
    assert isinstance(fusion.per_step_outputs, bool) and isinstance(fusion.supports_token_budget, bool)
    tokens = make_tokens(torch.Generator().manual_seed(9))
    out = run(fusion, tokens)
    util = fusion.utilisation()
    if util is not None:
        assert set(util) == set(NAMES)
        for u in util.values():
            assert torch.isfinite(u).all() and abs(float(u.sum()) - 1.0) < 1e-5
    if fusion.per_step_outputs:
        assert out.tokens is not None and out.tokens.x.shape[:2] == (B, len(NAMES))
    if not fusion.supports_token_budget:
        with pytest.raises(ValueError, match="supports_token_budget"):
            fusion.set_token_budget(BudgetState(TokenBudget(0.5, where="fusion")), NAMES)
        return
    for reducer in REDUCERS.names():
        fusion.set_token_budget(BudgetState(TokenBudget(0.5, reducer, where="fusion")), NAMES)
        red = run(fusion, tokens)
        assert fusion.token_trace[-1][1] < fusion.token_trace[0][0], reducer
        assert torch.isfinite(red.pooled).all()
    fusion.set_token_budget(None, NAMES)
    assert torch.equal(run(fusion, tokens).pooled, out.pooled)  # detached: the original code path again
