"""Pairwise / anchor objectives for N >= 3 modalities and the alignment + uniformity regulariser."""

from __future__ import annotations

import math
from functools import partial
from itertools import combinations

import pytest
import torch
import torch.nn.functional as F

from polymodal.objectives import (
    OBJECTIVES,
    ClipLoss,
    alignment,
    anchor_loss,
    clip_loss,
    pairwise_loss,
    siglip_loss,
    uniformity,
    uniformity_alignment,
)


def unit(*shape, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def hand_clip(x: list[list[float]], y: list[list[float]], s: float) -> float:
    """Symmetric InfoNCE with plain Python floats."""
    n = len(x)

    def dot(u, v):
        return sum(p * q for p, q in zip(u, v))

    def ce(rows, cols):
        total = 0.0
        for i in range(n):
            z = [s * dot(rows[i], cols[j]) for j in range(n)]
            total += -z[i] + math.log(sum(math.exp(v) for v in z))
        return total / n

    return (ce(x, y) + ce(y, x)) / 2


PAIR_LOSSES = {
    "clip": partial(clip_loss, logit_scale=10.0),
    "siglip": partial(siglip_loss, logit_scale=10.0, logit_bias=-5.0),
}


@pytest.mark.parametrize("name", list(PAIR_LOSSES))
def test_two_modalities_equal_the_pair_loss(name):
    pair = PAIR_LOSSES[name]
    a, b = unit(6, 8, seed=0), unit(6, 8, seed=1)
    feats = {"image": a, "text": b}
    expected = pair(a, b)
    assert torch.allclose(pairwise_loss(feats, pair), expected, atol=1e-7)
    assert torch.allclose(anchor_loss(feats, "image", pair), expected, atol=1e-7)


def test_three_modalities_hand_computed():
    # B = 2, D = 2: small enough to write the features out and compute the InfoNCE terms by hand
    x = [[1.0, 0.0], [0.0, 1.0]]
    y = [[0.6, 0.8], [0.8, -0.6]]
    z = [[-1.0, 0.0], [0.0, 1.0]]
    s = 3.0
    ab, ac, bc = hand_clip(x, y, s), hand_clip(x, z, s), hand_clip(y, z, s)
    feats = {"a": torch.tensor(x), "b": torch.tensor(y), "c": torch.tensor(z)}
    pair = partial(clip_loss, logit_scale=s)
    assert pairwise_loss(feats, pair).item() == pytest.approx((ab + ac + bc) / 3, rel=1e-6)
    assert anchor_loss(feats, "a", pair).item() == pytest.approx((ab + ac) / 2, rel=1e-6)
    assert anchor_loss(feats, "c", pair).item() == pytest.approx((ac + bc) / 2, rel=1e-6)
    # the symmetric loss does not care which side the anchor is on
    assert anchor_loss(feats, "b", pair).item() == pytest.approx((ab + bc) / 2, rel=1e-6)


def test_pairwise_over_four_modalities_counts_every_pair_once():
    feats = {m: unit(4, 8, seed=i) for i, m in enumerate("wxyz")}
    pair = PAIR_LOSSES["clip"]
    expected = sum(pair(feats[p], feats[q]) for p, q in combinations("wxyz", 2)) / 6
    assert torch.allclose(pairwise_loss(feats, pair), expected, atol=1e-6)


def test_present_masks_select_rows_where_both_modalities_exist():
    feats = {m: unit(5, 8, seed=10 + i) for i, m in enumerate("abc")}
    present = {"b": torch.tensor([True, True, False, True, True]), "c": torch.tensor([True, False, True, True, False])}
    pair = PAIR_LOSSES["clip"]
    ab = pair(feats["a"][present["b"]], feats["b"][present["b"]])
    ac = pair(feats["a"][present["c"]], feats["c"][present["c"]])
    both = present["b"] & present["c"]  # rows 0, 3
    bc = pair(feats["b"][both], feats["c"][both])
    assert torch.allclose(pairwise_loss(feats, pair, present=present), (ab + ac + bc) / 3, atol=1e-6)
    # a pair with < 2 common rows is skipped; with none left the loss is a graph-connected zero
    lonely = {"b": torch.tensor([True, False, False, False, False])}
    assert torch.allclose(anchor_loss(feats, "a", pair, present=lonely), ac * 0 + pair(feats["a"], feats["c"]))
    leaves = {m: f.clone().requires_grad_(True) for m, f in feats.items()}
    none = {m: torch.zeros(5, dtype=torch.bool) for m in feats}
    zero = pairwise_loss(leaves, pair, present=none)
    zero.backward()
    assert zero.item() == 0.0 and leaves["a"].grad is not None


def test_modules_share_one_temperature_and_get_gradients():
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    feats = {m: torch.randn(4, 8, generator=g, requires_grad=True) for m, g in zip("abc", gens)}
    for name, kwargs in [("pairwise", {}), ("anchor", {"anchor": "b"}), ("pairwise", {"pair": "siglip"})]:
        module = OBJECTIVES.build(name, **kwargs)
        params = dict(module.named_parameters())
        assert "pair.logit_scale" in params  # one shared parameter, not one per pair
        module.zero_grad()
        module(feats).backward()
        assert params["pair.logit_scale"].grad.abs() > 0
    anchor = OBJECTIVES.build("anchor", pair=ClipLoss(normalize=True))
    expected = ClipLoss()(feats["a"], feats["b"]) / 2 + ClipLoss()(feats["a"], feats["c"]) / 2
    assert torch.allclose(anchor(feats), expected, atol=1e-6)  # default anchor: the first modality
    with pytest.raises(KeyError, match="anchor modality"):
        anchor_loss(feats, "d", PAIR_LOSSES["clip"])


def test_uniformity_and_alignment_match_direct_formulas():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    b = torch.tensor([[0.8, 0.6], [0.0, -1.0], [0.6, 0.8]])
    t = 2.0

    def sq(u, v):
        return float(((u - v) ** 2).sum())

    align = sum(sq(a[i], b[i]) for i in range(3)) / 3
    assert alignment(a, b).item() == pytest.approx(align, rel=1e-6)
    align1 = sum(math.sqrt(sq(a[i], b[i])) for i in range(3)) / 3
    assert alignment(a, b, alpha=1.0).item() == pytest.approx(align1, rel=1e-6)

    def uni(x):
        pairs = [(i, j) for i in range(len(x)) for j in range(i + 1, len(x))]
        return math.log(sum(math.exp(-t * sq(x[i], x[j])) for i, j in pairs) / len(pairs))

    z = torch.cat([a, b])
    assert uniformity(a, t).item() == pytest.approx(uni(a), rel=1e-6)
    assert uniformity_alignment(a, b, t).item() == pytest.approx(align + uni(z), rel=1e-6)
    per_modality = align + 0.5 * (uni(a) + uni(b)) / 2
    ours = uniformity_alignment(a, b, t, uniformity_weight=0.5, joint=False)
    assert ours.item() == pytest.approx(per_modality, rel=1e-6)


def test_regulariser_gradient_is_finite_with_duplicate_rows_and_shrinks_the_gap():
    """Identical rows (zero distances) must not give NaN gradients; a few steps on the regulariser alone move the
    two modality centroids closer together."""
    g = torch.Generator().manual_seed(3)
    base = torch.randn(16, 8, generator=g)
    a = (base + 1.0).requires_grad_(True)  # modality a lives in one cone ...
    b = (base - 1.0 + 0.1 * torch.randn(16, 8, generator=g)).requires_grad_(True)  # ... b in the opposite one
    with torch.no_grad():
        a[1] = a[0]
    module = OBJECTIVES.build("uniformity_alignment")

    def gap():
        return (F.normalize(a, dim=-1).mean(0) - F.normalize(b, dim=-1).mean(0)).norm().item()

    before = gap()
    opt = torch.optim.SGD([a, b], lr=5.0)
    for _ in range(20):
        opt.zero_grad()
        loss = module({"x": a, "y": b})
        loss.backward()
        assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
        opt.step()
    assert gap() < 0.5 * before
