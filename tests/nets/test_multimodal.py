import torch

from polymodal.model import drop_modalities


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

    from polymodal.config import ModelConfig
    from polymodal.model import MultimodalNet
    from polymodal.predictor import prepare
    from polymodal.train.module import training_loss
    from tests.xor_data import GROUPS, xor_table

    schema, ds, _ = prepare(xor_table(16), "y", modalities=GROUPS, progress=False)
    torch.manual_seed(0)
    net = MultimodalNet(schema, ModelConfig(dim=16, fusion="sequential")).eval()
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
    assert MultimodalNet(schema, ModelConfig(dim=16, fusion="concat")).eval()(batch).step_logits is None
