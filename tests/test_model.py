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
