"""``PretrainNet``: targets aligned with the encoders' tokens, hidden tokens that cannot leak, per-modality losses,
every target kind (image, audio, time series, tabular, text)."""

import numpy as np
import pandas as pd
import pytest
import torch

from tests.pretrain.conftest import TINY


def _batch(model, rows):
    _, ds, _ = model.decode(rows)
    return ds[list(range(len(ds)))]


def test_pixel_patches_round_trip(pre_run, av_rows):
    model, _ = pre_run
    batch = _batch(model, av_rows[1])
    target = model.net.targets["image"]
    patches, maskable = target.make(batch.inputs["image"])
    assert patches.shape == (20, 49, 16) and maskable.all()  # 7x7 grid of 4x4 patches, one per token
    back = np.stack([target.decode(p)[..., 0] for p in patches])
    assert np.allclose(back, batch.inputs["image"]["pixels"][:, 0].numpy(), atol=1e-5)


def test_audio_targets_align_with_the_encoder_tokens(pre_run, av_rows):
    model, _ = pre_run
    batch = _batch(model, av_rows[1])
    frames, maskable = model.net.targets["audio"].make(batch.inputs["audio"])
    tokens = model.net.encoders["audio"](batch.inputs["audio"], batch.present["audio"])
    assert frames.shape[:2] == tokens.x.shape[:2] and frames.shape[2] == 4 * 40
    assert torch.equal(maskable, tokens.mask)


def _plan(model, batch, seed=0):
    _, mk = model.net.maskable(batch)
    from polymodal.pretrain.masking import sample_visible

    return sample_visible(mk, 0.75, 1.0, rng=np.random.default_rng(seed)), mk


@torch.no_grad()
def test_hidden_content_cannot_leak_into_predictions(pre_run, av_rows):
    model, _ = pre_run
    net = model.net.eval()
    batch = _batch(model, av_rows[1])
    vis, mk = _plan(model, batch)
    ref = net(batch, vis)
    # scramble the content behind every hidden token: pixels of hidden grid cells, samples of hidden audio spans
    img, aud = net.targets["image"], net.targets["audio"]
    hid_img = mk["image"] & ~vis["image"]
    noise = torch.rand_like(batch.inputs["image"]["pixels"])
    blanked = img.hide({"pixels": torch.ones_like(noise)}, hid_img)["pixels"]  # 1 where visible, 0 where hidden
    batch.inputs["image"]["pixels"] = torch.where(blanked > 0, batch.inputs["image"]["pixels"], noise)
    hid_aud = mk["audio"] & ~vis["audio"]
    wave = batch.inputs["audio"]["wave"]
    keep = aud.hide({"wave": torch.ones_like(wave)}, hid_aud)["wave"]
    batch.inputs["audio"]["wave"] = torch.where(keep > 0, wave, torch.randn_like(wave))
    same = net(batch, vis)
    for m in ("image", "audio"):
        assert torch.allclose(ref.preds[m], same.preds[m], atol=1e-5), f"hidden {m} content reached the predictions"
        assert not torch.allclose(ref.targets[m], same.targets[m]), f"the test did change hidden {m} content"
    # a visible token's content does reach them
    batch.inputs["image"]["pixels"] = torch.where(blanked > 0, noise, batch.inputs["image"]["pixels"])
    assert not torch.allclose(ref.preds["audio"], net(batch, vis).preds["audio"], atol=1e-5)


@torch.no_grad()
def test_a_modality_is_predicted_from_the_others_alone(pre_run, av_rows):
    model, _ = pre_run
    rows = av_rows[1]
    _, with_image, _, present = model.predict_modality(rows, "image")
    _, without, _, absent = model.predict_modality(rows.drop(columns=["image"]), "image")
    assert present.all() and not absent.any()
    assert torch.allclose(with_image, without, atol=1e-5), "the target's own content is never an input"
    assert with_image.shape == (20, 49, 16)


def test_losses_are_reported_per_modality(pre_run, av_rows):
    model, _ = pre_run
    hist = model.info["training"]["history"][-1]
    assert {"train_loss_image", "train_loss_audio", "val_loss_image", "val_loss_audio"} <= set(hist)
    assert np.isclose(hist["val_loss"], hist["val_loss_image"] + hist["val_loss_audio"], rtol=1e-4)
    losses = model.losses(av_rows[1])
    assert set(losses) == {"image", "audio"} and all(np.isfinite(v) and v > 0 for v in losses.values())


def test_every_target_kind_pretrains(tmp_path):
    """Time series (basicmotions), tabular numbers and text in one table: each modality gets its own loss."""
    from polymodal.datasets import load_basicmotions, load_emoji
    from polymodal.pretrain import pretrain

    motion = load_basicmotions("train")
    names = load_emoji("train", limit=len(motion))["name"].to_numpy()
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"accel": motion["accel"], "name": names,
                          "x1": rng.standard_normal(len(motion)), "x2": rng.standard_normal(len(motion))})
    model = pretrain(table, kinds={"name": "text"}, groups={"nums": ["x1", "x2"]},
                     **{**TINY, "val_fraction": 0.25})
    kinds = {s.name: s.kind for s in model.schema}
    assert sorted(kinds.values()) == ["tabular", "text", "timeseries"]
    hist = model.info["training"]["history"][-1]
    for m in kinds:
        assert np.isfinite(hist[f"train_loss_{m}"]), m
    _, ds, _ = model.decode(table.head(4))
    series = model.net.targets["accel"].make(ds[[0, 1, 2, 3]].inputs["accel"])[0]
    assert series.shape[0] == 4 and series.shape[2] == model.net.targets["accel"].out_dim
