"""End to end: polymodal.fit with a pretrained text encoder trains, saves (without the frozen weights), reloads
offline and predicts the same; unfreezing saves the backbone and splits the learning rate."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import polymodal as pm
from polymodal.config.model import TrainConfig
from polymodal.train.module import build_optimizer

pytest.importorskip("transformers")

POS = ["a happy smiling face", "the sun, a red car", "happy dog on the mat", "smiling cat!"]
NEG = ["a sad face", "rain on the blue car", "sad dog sat", "the rain."]


def table(n=40, seed=0):
    rng = np.random.default_rng(seed)
    rows = [(rng.choice(POS if i % 2 else NEG), "pos" if i % 2 else "neg", float(rng.normal())) for i in range(n)]
    return pd.DataFrame(rows, columns=["caption", "label", "noise"])


def fit(tiny, tmp_path, **encoder_options):
    return pm.fit(
        table(), label="label", fusion="concat",
        encoders={"caption": {"name": "hf_text", "options": {"path": str(tiny("bert")), **encoder_options}}},
        epochs=2, batch_size=16, dim=16, progress=False, out=tmp_path / "run",
    )


def test_fit_save_reload_predict(tiny, tmp_path):
    model = fit(tiny, tmp_path)
    run = tmp_path / "run"
    opts = json.loads((run / "schema.json").read_text())["modalities"][0]["options"]
    assert opts["tokenizer"] == str(tiny("bert")) and opts["max_len"] >= 3 and "tokenizer_sha256" in opts
    weights = load_file(str(run / "weights.safetensors"))
    assert not [k for k in weights if ".backbone." in k]  # the frozen BERT is not copied into the run
    assert "encoders.caption.proj.weight" in weights
    test = table(12, seed=1).drop(columns="label")
    before = model.predict(test)
    again = pm.load(run)
    after = again.predict(test)
    assert before["prediction"].tolist() == after["prediction"].tolist()
    np.testing.assert_allclose(before.filter(like="proba_").values, after.filter(like="proba_").values, atol=1e-6)
    # the frozen backbone did not move
    ref = __import__("transformers").AutoModel.from_pretrained(tiny("bert"))
    got = again.net.encoders["caption"].backbone["tower"].state_dict()
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(got[k], v, atol=0, rtol=0)


def test_trainable_saves_the_backbone_and_splits_the_lr(tiny, tmp_path):
    model = fit(tiny, tmp_path, trainable=True, lr_scale=0.1)
    weights = load_file(str(tmp_path / "run" / "weights.safetensors"))
    assert [k for k in weights if ".backbone." in k]
    enc = model.net.encoders["caption"]
    assert enc.cache is None and all(p.requires_grad for p in enc.backbone.parameters())
    opt, _ = build_optimizer(model.net, TrainConfig(lr=1e-3), 10)
    lrs = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert all(lrs[id(p)] == pytest.approx(1e-4) for p in enc.backbone.parameters())
    assert lrs[id(enc.proj.weight)] == pytest.approx(1e-3)
    again = pm.load(tmp_path / "run")
    test = table(8, seed=2)
    np.testing.assert_allclose(
        model.predict(test).filter(like="proba_").values, again.predict(test).filter(like="proba_").values, atol=1e-6
    )


def test_frozen_training_moves_only_the_projection(tiny, tmp_path):
    model = fit(tiny, tmp_path)
    enc = model.net.encoders["caption"]
    assert not any(p.requires_grad for p in enc.backbone.parameters())
    assert enc.cache is not None and enc.cache.hits > 0  # epoch 2 (and validation) read the cache
    opt, _ = build_optimizer(model.net, TrainConfig(), 10)
    ids = {id(p) for g in opt.param_groups for p in g["params"]}
    assert not any(id(p) in ids for p in enc.backbone.parameters())


def test_reload_refuses_changed_weights(tiny, tmp_path):
    import shutil

    import transformers

    folder = tmp_path / "bert-copy"
    shutil.copytree(tiny("bert"), folder)
    pm.fit(
        table(), label="label", encoders={"caption": {"name": "hf_text", "options": {"path": str(folder)}}},
        epochs=1, batch_size=16, dim=16, progress=False, out=tmp_path / "run",
    )
    pm.load(tmp_path / "run")  # unchanged: fine
    torch.manual_seed(123)
    transformers.BertModel(transformers.AutoConfig.from_pretrained(folder)).save_pretrained(folder)  # other weights
    with pytest.raises(pm.PolymodalError, match="differ"):
        pm.load(tmp_path / "run")


def test_fit_with_a_pretrained_image_tower(tiny, tmp_path):
    """The encoder's image size reaches the processor (20x20 arrays are resized to the ViT's 30x30)."""
    rng = np.random.default_rng(0)
    images, labels = [], []
    for i in range(30):
        img = (rng.random((20, 20, 3)) * 80).astype(np.uint8)
        img[:, :10 if i % 2 else 20] += 150  # bright left half vs whole image
        images.append(img)
        labels.append("left" if i % 2 else "all")
    frame = pd.DataFrame({"picture": images, "label": labels})
    model = pm.fit(
        frame, label="label", encoders={"picture": {"name": "hf_vision", "options": {"path": str(tiny("vit"))}}},
        epochs=2, batch_size=8, dim=16, progress=False, out=tmp_path / "run",
    )
    opts = model.schema["picture"].options
    assert opts["size"] == [30, 30] and opts["channels"] == 3
    again = pm.load(tmp_path / "run")
    np.testing.assert_allclose(
        model.predict(frame).filter(like="proba_").values, again.predict(frame).filter(like="proba_").values, atol=1e-6
    )
