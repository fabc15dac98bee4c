"""Objectives declare how ``alignment_loss`` calls them (``Objective.takes_pair`` / ``handles_missing``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from polymodal.heads.projection import alignment_loss, build_objective
from polymodal.objectives import OBJECTIVES, AnchorLoss, ClipLoss, Objective, PairwiseLoss, SymileLoss

names = pytest.mark.parametrize("name", OBJECTIVES.names())


def _emb(m: int, b: int = 8, d: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    emb = {f"m{i}": F.normalize(torch.randn(b, d, generator=g), dim=-1) for i in range(m)}
    present = {k: torch.rand(b, generator=g) > 0.2 for k in emb}
    for p in present.values():
        p[:3] = True  # at least three rows where everything is present
    return emb, present


@names
def test_every_objective_declares_how_it_is_called(name):
    obj = OBJECTIVES.build(name)
    assert isinstance(obj, Objective)
    assert isinstance(obj.takes_pair, bool) and isinstance(obj.handles_missing, bool)


@names
@pytest.mark.parametrize("m", [2, 3])
def test_alignment_loss_calls_every_objective_as_it_declares(name, m):
    obj = build_objective(name, m)
    if m > 2 and obj.takes_pair:
        pytest.skip(f"{name} compares exactly two modalities (and is not averaged over pairs)")
    emb, present = _emb(m)
    torch.manual_seed(0)
    loss = alignment_loss(obj, emb, present)
    assert loss.dim() == 0 and torch.isfinite(loss)


def test_declarations_choose_the_call():
    assert ClipLoss.takes_pair and not ClipLoss.handles_missing
    assert not SymileLoss.takes_pair and not SymileLoss.handles_missing
    assert PairwiseLoss.handles_missing and AnchorLoss.handles_missing
    emb, present = _emb(2)
    rows = present["m0"] & present["m1"]
    clip = ClipLoss()
    assert torch.equal(alignment_loss(clip, emb, present), clip(emb["m0"][rows], emb["m1"][rows]))
    symile = SymileLoss()
    torch.manual_seed(0)
    got = alignment_loss(symile, emb, present)
    torch.manual_seed(0)
    assert torch.equal(got, symile({k: e[rows] for k, e in emb.items()}))
    pair = build_objective("clip", 3)
    assert isinstance(pair, PairwiseLoss)  # clip declares takes_pair: averaged over the 3 pairs
    assert isinstance(build_objective("symile", 3), SymileLoss)  # symile compares all modalities at once
    emb3, present3 = _emb(3)
    assert torch.equal(alignment_loss(pair, emb3, present3), pair(emb3, present=present3))


def test_alignment_loss_refuses_an_undeclared_module():
    class Plain(torch.nn.Module):
        def forward(self, a, b):
            return (a - b).square().mean()

    emb, present = _emb(2)
    with pytest.raises(TypeError, match="must subclass polymodal.objectives.Objective"):
        alignment_loss(Plain(), emb, present)
