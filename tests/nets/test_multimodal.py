"""``nets/multimodal.py``: the one net — modality dropout, supervised and alignment nets, step supervision."""

import pytest
import torch

from polymodal.config.model import AlignSpec, ModelConfig
from polymodal.nets.multimodal import MultimodalNet, drop_modalities
from polymodal.registry import Component
from tests.xor_data import GROUPS, xor_table


def _xor(n: int):
    """(fitted schema, decoded dataset) of ``xor_table(n)`` (modalities a and b, 4 classes)."""
    from polymodal.recipes.steps import prepare

    prep = prepare(xor_table(n), "y", ModelConfig(), supervised=True, groups=GROUPS, progress=False)
    return prep.schema, prep.dataset


def test_drop_modalities_never_empties_a_sample_and_respects_absence():
    g = torch.Generator().manual_seed(0)
    b = 4000
    present = {"a": torch.rand(b, generator=g) < 0.8, "b": torch.ones(b, dtype=torch.bool), "c": torch.zeros(b, dtype=torch.bool)}
    out = drop_modalities(present, 0.5, generator=g)
    stacked_in = torch.stack(list(present.values()), 1)
    stacked_out = torch.stack(list(out.values()), 1)
    assert not (stacked_out & ~stacked_in).any(), "dropout must never make an absent modality present"
    assert stacked_out.any(1).all(), "every sample that had a modality keeps at least one"
    assert not out["c"].any()
    # Where a and b are both present: keep both (1-p)^2, keep one p(1-p) each, and drop-both (p^2) reverts to
    # keeping both. So with p = 0.5, b is hidden in 1/3 of the samples that keep a.
    both = present["a"]
    frac = 1 - out["b"][both & out["a"]].float().mean()
    assert abs(frac - 1 / 3) < 0.03


def test_drop_modalities_zero_probability_is_identity():
    present = {"a": torch.tensor([True, False, True]), "b": torch.tensor([False, True, True])}
    out = drop_modalities(present, 0.0)
    assert all(torch.equal(out[k], present[k]) for k in present)


def test_sequential_fusion_supervises_every_step_with_the_task_head():
    """MultiModN: the task head decodes the state after each step a sample took; each such step is supervised."""
    import torch.nn.functional as F

    from polymodal.train.module import training_loss

    schema, ds = _xor(16)
    torch.manual_seed(0)
    net = MultimodalNet(schema, ModelConfig(dim=16, fusion=Component("sequential"))).eval()
    batch = ds[list(range(16))]
    batch.present["b"] = torch.arange(16) % 2 == 0  # b missing on odd rows: their step 2 did not run
    out = net(batch)
    assert out.step_logits.shape == (16, 2, 4) and out.step_mask[:, 1].tolist() == batch.present["b"].tolist()
    # the final state is the last state a sample reached; the head on it is the model's prediction
    torch.testing.assert_close(out.step_logits[:, -1], out.logits)
    loss, parts = training_loss(out, batch, "classify", aux_weight=0.0)
    m = out.step_mask
    expected = F.cross_entropy(out.step_logits[m], batch.target[:, None].expand(-1, 2)[m])
    # the task loss is the mean over the steps each sample took (its final prediction is one of them)
    torch.testing.assert_close(parts["task"], expected)
    torch.testing.assert_close(loss, expected)
    assert int(m.sum()) == 16 + 8
    # other fusions have no step outputs
    assert MultimodalNet(schema, ModelConfig(dim=16, fusion=Component("concat"))).eval()(batch).step_logits is None


def test_supervised_net_outputs_and_head_options():
    schema, ds = _xor(12)
    cfg = ModelConfig(dim=16, fusion=Component("late"), head=Component("classify", {"dropout": 0.3}))
    net = MultimodalNet(schema, cfg).eval()
    assert net.has_task and net.align_head is None and net.head[0].p == 0.3
    out = net(ds[list(range(12))])
    assert out.logits.shape == (12, 4) and set(out.aux_logits) == {"a", "b"} and out.align_loss is None


def test_alignment_net_has_encoders_and_projections_only():
    schema, ds = _xor(12)
    cfg = ModelConfig(dim=16, fusion=None, align=AlignSpec(Component("clip"), embed_dim=8))
    net = MultimodalNet(schema, cfg)
    assert not net.has_task and net.fusion is None and net.head is None and net.aux_heads is None
    batch = ds[list(range(12))]
    out = net.train()(batch)
    assert out.logits is None and out.fusion is None and out.align_loss.ndim == 0 and out.align_loss.requires_grad
    assert net.eval()(batch).align_loss is None  # only in training unless asked
    assert torch.isfinite(net(batch, align_loss=True).align_loss)
    emb = net.align_head(net.encode(batch))
    assert emb["a"].shape == (12, 8)
    torch.testing.assert_close(emb["a"].norm(dim=-1), torch.ones(12))


def test_alignment_net_needs_two_modalities():
    from polymodal.recipes.steps import prepare

    cfg = ModelConfig(dim=16, fusion=None, align=AlignSpec())
    prep = prepare(xor_table(12), "y", ModelConfig(), supervised=True, groups={"a": GROUPS["a"]}, use=["a"],
                   progress=False)
    with pytest.raises(ValueError, match="at least 2 modalities"):
        MultimodalNet(prep.schema, cfg)


def test_supervised_net_with_a_shared_space_computes_both():
    schema, ds = _xor(12)
    cfg = ModelConfig(dim=16, fusion=Component("concat"), align=AlignSpec(Component("siglip"), embed_dim=8))
    net = MultimodalNet(schema, cfg).train()
    out = net(ds[list(range(12))], modality_dropout=0.5)
    assert out.logits.shape == (12, 4) and out.align_loss is not None
