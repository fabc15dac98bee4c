"""``heads/projection.py``: per-modality projections into one space, the masked objective, the fused vector."""

import pytest
import torch

from polymodal.config.model import AlignSpec
from polymodal.errors import PolymodalError
from polymodal.heads.projection import AlignHead, alignment_loss, build_objective, fuse
from polymodal.objectives import PairwiseLoss
from polymodal.registry import Component
from polymodal.types import Tokens


def _tokens(x: torch.Tensor, present: torch.Tensor) -> Tokens:
    return Tokens(x[:, None, :], torch.ones(x.shape[0], 1, dtype=torch.bool), present)


def test_head_vectors_are_normalised_and_zero_when_absent():
    head = AlignHead(["a", "b"], 8, 4)
    present = torch.tensor([True, False, True])
    emb = head({"a": _tokens(torch.randn(3, 8), present), "b": _tokens(torch.randn(3, 8), torch.ones(3, dtype=torch.bool))})
    assert emb["a"].shape == (3, 4)
    assert torch.allclose(emb["a"][[0, 2]].norm(dim=-1), torch.ones(2), atol=1e-5)
    assert torch.all(emb["a"][1] == 0)
    f = fuse(emb, {"a": present, "b": torch.ones(3, dtype=torch.bool)})
    assert torch.allclose(f[1], emb["b"][1], atol=1e-6)  # only b present: fused = b


def test_loss_uses_only_rows_where_both_are_present():
    head = AlignHead(["a", "b"], 8, 4, objective="clip")
    a, b = torch.randn(6, 4), torch.randn(6, 4)
    present = {"a": torch.tensor([1, 1, 1, 0, 1, 1], dtype=torch.bool), "b": torch.tensor([1, 1, 1, 1, 0, 1], dtype=torch.bool)}
    rows = present["a"] & present["b"]
    got = alignment_loss(head.objective, {"a": a, "b": b}, present)
    want = head.objective(a[rows], b[rows])
    assert torch.allclose(got, want)
    # changing an absent row changes nothing
    a2 = a.clone()
    a2[3] = 100.0
    assert torch.allclose(alignment_loss(head.objective, {"a": a2, "b": b}, present), got)
    # fewer than 2 complete rows: a zero that still has a graph
    none = {"a": torch.tensor([1, 0, 0, 0, 0, 0], dtype=torch.bool), "b": present["b"]}
    z = alignment_loss(head.objective, {"a": a.requires_grad_(), "b": b}, none)
    assert float(z.detach()) == 0.0 and z.requires_grad


def test_pair_objective_over_three_modalities_becomes_pairwise():
    assert isinstance(build_objective("clip", 3), PairwiseLoss)
    assert not isinstance(build_objective("clip", 2), PairwiseLoss)
    assert type(build_objective("symile", 3)).__name__ == "SymileLoss"
    with pytest.raises(PolymodalError, match="unknown (alignment )?objective 'nope'"):
        AlignSpec(Component("nope")).validate()
    with pytest.raises(ValueError, match="at least 2 modalities"):
        build_objective("clip", 1)


def test_projection_kinds_options_and_weight():
    lin = AlignHead(["a", "b"], 8, 4, "siglip", {"init_logit_bias": -3.0, "learnable": False}, "linear", weight=0.5)
    assert isinstance(lin.proj["a"], torch.nn.Linear) and float(lin.objective.logit_bias) == -3.0
    mlp = AlignHead(["a", "b"], 8, 4)
    assert isinstance(mlp.proj["a"], torch.nn.Sequential)
    emb = {m: torch.nn.functional.normalize(torch.randn(5, 4), dim=-1) for m in "ab"}
    present = {m: torch.ones(5, dtype=torch.bool) for m in "ab"}
    torch.testing.assert_close(lin.loss(emb, present), 0.5 * alignment_loss(lin.objective, emb, present))


def test_uniformity_weight_adds_the_regulariser_per_pair():
    from polymodal.objectives import uniformity_alignment

    head = AlignHead(["a", "b", "c"], 8, 4, "symile")
    emb = {m: torch.nn.functional.normalize(torch.randn(6, 4), dim=-1) for m in "abc"}
    present = {m: torch.ones(6, dtype=torch.bool) for m in "abc"}
    present["c"][:5] = False  # a-c and b-c share one row only: no regulariser term for those pairs
    torch.manual_seed(0)
    base = alignment_loss(head.objective, emb, present)
    torch.manual_seed(0)
    reg = alignment_loss(head.objective, emb, present, uniformity_weight=0.3)
    torch.testing.assert_close(reg - base, 0.3 * uniformity_alignment(emb["a"], emb["b"]))


def test_fuse_is_the_normalised_mean_of_present_vectors():
    emb = {"a": torch.tensor([[1.0, 0.0], [1.0, 0.0]]), "b": torch.tensor([[0.0, 1.0], [0.0, 1.0]])}
    present = {"a": torch.tensor([True, False]), "b": torch.tensor([True, False])}
    out = fuse(emb, present)
    torch.testing.assert_close(out[0], torch.tensor([2**-0.5, 2**-0.5]))
    assert not out[1].any()  # nothing present: zeros
