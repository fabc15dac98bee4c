"""The contract every alignment objective meets, over every registered name (``OBJECTIVES.names()``).

Built the way nets build them (``heads.projection.build_objective``) for 2 and, where the objective supports it,
3 modalities, and called the way nets call them (``heads.projection.alignment_loss``): a finite scalar with
gradients; invariant to a permutation of the rows of all modalities together; lower for aligned rows than for
random ones.
"""

import pytest
import torch
import torch.nn.functional as F

from polymodal.heads.projection import alignment_loss, build_objective
from polymodal.objectives import OBJECTIVES

B, D = 32, 16
# symile's default negatives ("n") are random row permutations; "n_squared" takes every combination, so the loss
# is exactly a function of the set of rows (the random mode is checked in tests/objectives/test_symile.py)
DETERMINISTIC = {"symile": {"negative_sampling": "n_squared"}}


def _supported(name: str, m: int) -> bool:
    return not (m > 2 and build_objective(name, m).takes_pair)  # a pair loss that is not averaged over pairs


CASES = [(name, m) for name in OBJECTIVES.names() for m in (2, 3) if _supported(name, m)]


def _unit(seed: int, *shape: int) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def _random(m: int, seed: int = 0) -> dict[str, torch.Tensor]:
    return {f"m{i}": _unit(seed + i, B, D) for i in range(m)}


def _aligned(name: str, m: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """b = a (and c = a). An objective with one term over all modalities at once (symile: ``sum_d a_d b_d c_d``)
    is aligned by (a, a, u) instead, with u one constant unit vector: the score is then ``a . a / sqrt(D)``."""
    a = _unit(seed, B, D)
    emb = {"m0": a, "m1": a.clone()}
    if m == 3:
        obj = build_objective(name, m)
        joint = not obj.takes_pair and not obj.handles_missing
        emb["m2"] = torch.full((B, D), D**-0.5) if joint else a.clone()
    return emb


def _loss(name: str, emb: dict[str, torch.Tensor], options: dict | None = None) -> torch.Tensor:
    torch.manual_seed(0)
    obj = build_objective(name, len(emb), options)
    present = {k: torch.ones(B, dtype=torch.bool) for k in emb}
    return alignment_loss(obj, emb, present), obj


def test_every_registered_objective_is_covered():
    assert {n for n, _ in CASES} == set(OBJECTIVES.names())
    assert {"clip", "siglip", "symile", "pairwise", "anchor"} <= {n for n, m in CASES if m == 3}


@pytest.mark.parametrize("name,m", CASES)
def test_finite_scalar_with_gradients(name, m):
    emb = {k: v.clone().requires_grad_() for k, v in _random(m).items()}
    loss, obj = _loss(name, emb)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    for k, v in emb.items():
        assert v.grad is not None and torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0, k
    for n, p in obj.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), n


@pytest.mark.parametrize("name,m", CASES)
def test_invariant_to_a_row_permutation_of_all_modalities(name, m):
    emb = _random(m, seed=3)
    perm = torch.randperm(B, generator=torch.Generator().manual_seed(1))
    options = DETERMINISTIC.get(name)
    before, _ = _loss(name, emb, options)
    after, _ = _loss(name, {k: v[perm] for k, v in emb.items()}, options)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,m", CASES)
def test_lower_for_aligned_rows_than_for_random_rows(name, m):
    aligned = float(_loss(name, _aligned(name, m))[0].detach())
    random = float(_loss(name, _random(m))[0].detach())
    assert aligned < random, (aligned, random)


def test_unsupported_combinations_fail_clearly():
    for name in OBJECTIVES.names():
        if _supported(name, 3):
            continue
        with pytest.raises((ValueError, TypeError), match="exactly 2 modalities"):
            _loss(name, _random(3))
