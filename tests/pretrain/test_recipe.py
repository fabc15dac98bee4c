"""The pre-trained run folder, ``fit(init=, freeze=)`` and ``generate`` (``pretrain/run.py``, ``recipes/steps.py``)."""

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image
from safetensors.torch import load_file

import polymodal as pm
from polymodal.pretrain import PretrainedModel

FT = dict(dim=16, epochs=1, batch_size=32, progress=False, fusion={"name": "transformer", "options": {"layers": 1}})


def test_run_folder_saves_and_loads_the_same_net(pre_run, av_rows):
    model, out = pre_run
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == [
        "config.json", "manifest.json", "report.json", "schema.json", "weights.safetensors"]
    loaded = pm.PretrainedModel.load(out)
    assert isinstance(loaded, PretrainedModel) and loaded.spec == model.spec
    pm.fit(av_rows[0], label="digit", out=out.parent / "fitted", **FT)
    with pytest.raises(pm.PolymodalError, match="not a pre-trained one"):
        PretrainedModel.load(out.parent / "fitted")
    assert loaded.losses(av_rows[1]) == pytest.approx(model.losses(av_rows[1]), rel=1e-5)


def test_fit_init_loads_encoders_and_fusion_by_name(pre_run, av_rows):
    _, out = pre_run
    saved = load_file(str(out / "weights.safetensors"))
    # lr must be > 0: a tiny one leaves the weights (AdamW steps are about lr) where init put them
    ft = pm.fit(av_rows[0], label="digit", init=out, lr=1e-12, **FT)
    own = ft.net.state_dict()
    assert ft.info["init"]["fusion_loaded"] and ft.info["init"]["loaded"] > 50
    for k, v in saved.items():
        if k.startswith(("encoders.", "fusion.")) and "running_" not in k and "num_batches" not in k:
            assert torch.allclose(own[k], v, atol=1e-7), k
    other = pm.fit(av_rows[0], label="digit", init=out, **{**FT, "fusion": "late"})
    assert not other.info["init"]["fusion_loaded"], "another fusion: only the encoders are loaded"


def test_freeze_keeps_encoders_exactly(pre_run, av_rows):
    _, out = pre_run
    saved = load_file(str(out / "weights.safetensors"))
    probe = pm.fit(av_rows[0], label="digit", init=out, freeze="encoders", **{**FT, "epochs": 2})
    own = probe.net.state_dict()
    enc = [k for k in saved if k.startswith("encoders.")]
    assert all(torch.equal(own[k], saved[k]) for k in enc), "frozen encoders (BatchNorm statistics too) never move"
    assert any(not torch.equal(own[k], saved[k]) for k in saved if k.startswith("fusion.blocks")), "the fusion learns"
    assert probe.info["trainable_params"] < probe.info["params"]


def test_init_refuses_mismatched_shapes_and_bad_options(pre_run, av_rows):
    _, out = pre_run
    with pytest.raises(pm.PolymodalError, match=r"parameter 'encoders\.\w+\..*' is \[\d+.*\] in the run and \[\d+.*\] "
                                                 r"in this net"):
        pm.fit(av_rows[0], label="digit", init=out, **{**FT, "dim": 32})
    with pytest.raises(pm.PolymodalError, match="Did you mean 'encoders'"):
        pm.fit(av_rows[0], label="digit", init=out, freeze="encoder", **FT)
    with pytest.raises(pm.PolymodalError, match="init="):
        pm.fit(av_rows[0], label="digit", freeze="encoders", **FT)
    with pytest.raises(pm.PolymodalError, match="not a run folder"):
        pm.fit(av_rows[0], label="digit", init=out / "nope", **FT)


def test_generate_writes_images_and_audio(pre_run, av_rows, tmp_path):
    model, _ = pre_run
    rows = av_rows[1].head(3)
    imgs = model.generate(rows.drop(columns=["image"]), "image", tmp_path / "img")
    assert list(imgs.index) == list(rows.index)
    for p in imgs["path"]:
        im = Image.open(p)
        assert im.size == (28, 28) and im.mode == "L"
    wavs = model.generate(rows.drop(columns=["audio"]), "audio", tmp_path / "wav")
    wave, rate = sf.read(wavs["path"].iloc[0])
    assert rate == 8000 and wave.ndim == 1 and len(wave) > 1000 and np.isfinite(wave).all()
    with pytest.raises(pm.PolymodalError, match="Did you mean 'image'"):
        model.generate(rows, "imag", tmp_path / "x")


def test_pretrain_options_are_checked_before_reading(av_rows):
    from polymodal.pretrain import pretrain

    with pytest.raises(pm.PolymodalError, match="mask_ratio"):
        pretrain(av_rows[0], mask_ratio=1.0)
    with pytest.raises(pm.PolymodalError, match="masking must be one of"):
        pretrain(av_rows[0], masking="both")
    with pytest.raises(pm.PolymodalError, match="hide_modality is a probability"):
        pretrain(av_rows[0], hide_modality=1.0)
