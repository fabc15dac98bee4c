"""Masking as a data-side step (``pretrain/masking.py``): budgets, the Dirichlet split, caps, per-modality mode."""

import numpy as np
import torch

from polymodal.pretrain.masking import sample_visible, visible_counts


def _maskable(b=400, n_img=49, n_aud=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = torch.ones(b, n_img, dtype=torch.bool)
    aud = torch.arange(n_aud)[None] < torch.randint(4, n_aud + 1, (b, 1), generator=g)  # clips of varied length
    img[: b // 4] = False  # a quarter of the rows lack the image
    return {"image": img, "audio": aud}


def test_visible_tokens_are_a_subset_and_fill_the_row_budget():
    mk = _maskable()
    vis = sample_visible(mk, 0.75, 1.0, rng=np.random.default_rng(0))
    for m in mk:
        assert not (vis[m] & ~mk[m]).any(), "only maskable tokens can be visible"
    total = sum(mk[m].sum(1) for m in mk)
    got = sum(vis[m].sum(1) for m in mk)
    budget = torch.clamp(torch.round(0.25 * total.double()), min=1).long()
    # the Dirichlet shares add up to the budget unless a share exceeded a modality's tokens (then it is capped)
    assert (got <= budget).all()
    assert (got == budget).float().mean() > 0.6
    # rows without the image spend the whole budget on audio
    no_img = slice(0, 100)
    assert (vis["image"][no_img].sum(1) == 0).all()
    assert (vis["audio"][no_img].sum(1) == budget[no_img].clamp(max=mk["audio"][no_img].sum(1))).all()


def test_dirichlet_split_follows_alpha():
    counts = np.full((4000, 2), 100)
    caps = np.array([1 << 30, 1 << 30])
    even = visible_counts(counts, 0.5, 1.0, caps, np.random.default_rng(0))
    share = even[:, 0] / even.sum(1)
    # alpha = 1 over two modalities: the share is uniform on [0, 1] (mean 1/2, variance 1/12)
    assert abs(share.mean() - 0.5) < 0.02 and abs(share.var() - 1 / 12) < 0.01
    peaked = visible_counts(counts, 0.5, 0.05, caps, np.random.default_rng(0))
    one_sided = ((peaked == 0).any(1)).mean()
    assert one_sided > 0.7, "a small alpha gives one modality (nearly) the whole budget"


def test_hide_modality_hides_one_whole_modality_in_that_share_of_the_rows():
    counts = np.full((4000, 2), 100)
    caps = np.array([1 << 30, 1 << 30])
    base = visible_counts(counts, 0.5, 1.0, caps, np.random.default_rng(0))
    assert (base == 0).any(1).mean() < 0.02  # the Dirichlet split alone almost never hides a modality whole
    vis = visible_counts(counts, 0.5, 1.0, caps, np.random.default_rng(0), hide_modality=0.4)
    hidden = vis == 0
    assert not hidden.all(1).any()  # never both: the row keeps its budget on the other one
    assert abs(hidden.any(1).mean() - 0.4) < 0.03 and abs(hidden[:, 0].mean() - 0.2) < 0.03  # either, equally
    assert (vis[hidden.any(1)].sum(1) == 100).all()  # the other modality spends the whole budget
    # alpha this small puts the whole draw on one modality; when that is the hidden one, the rest still splits
    peaked = visible_counts(np.full((400, 2), 200), 0.5, 1e-3, caps, np.random.default_rng(0), hide_modality=0.9)
    assert (peaked.sum(1) == 200).all() and (peaked == 0).any(1).all()
    one = visible_counts(np.array([[0, 100]] * 50), 0.5, 1.0, caps, np.random.default_rng(0), hide_modality=0.9)
    assert (one[:, 1] == 50).all()  # a row with one modality has nothing to predict it from: never hidden


def test_caps_and_per_modality_masking():
    mk = _maskable()
    vis = sample_visible(mk, 0.5, 1.0, caps={"image": 3}, rng=np.random.default_rng(1))
    assert vis["image"].sum(1).max() <= 3
    alone = sample_visible(mk, 0.75, 1.0, rng=np.random.default_rng(1), crossmodal=False)
    for m in mk:
        n = mk[m].sum(1)
        want = torch.where(n > 0, torch.clamp(torch.round(0.25 * n.double()), min=1).long(), 0)
        assert torch.equal(alone[m].sum(1), want), "per-modality masking keeps 1 - ratio of each modality"


def test_same_seed_same_masks_and_positions_are_uniform():
    mk = _maskable()
    a = sample_visible(mk, 0.75, rng=np.random.default_rng(3))
    b = sample_visible(mk, 0.75, rng=np.random.default_rng(3))
    assert all(torch.equal(a[m], b[m]) for m in mk)
    freq = a["image"][100:].float().mean(0)  # each image position is visible about equally often
    assert freq.std() / freq.mean() < 0.25
