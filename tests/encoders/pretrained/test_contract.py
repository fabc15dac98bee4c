"""The shared encoder contract (tests/encoders/test_contract.py) on every pretrained encoder, built from tiny
local models (and EfficientNet-Lite0's shipped weights at a small input size)."""

from __future__ import annotations

import pytest
import torch

from polymodal.encoders import ENCODERS
from polymodal.encoders.pretrained import PretrainedEncoder
from polymodal.types import Tokens
from tests.encoders.test_contract import (
    DIM,
    PRESENT,
    B,
    assert_real_close,
    make_inputs,
    make_spec,
    perturb_padding,
    select,
)

from .conftest import WORDS

TEXT = {"vocab": WORDS[:2] + WORDS[5:], "max_len": 12}  # ids stay inside the tiny vocabularies

CASES = {
    "hf_text-bert": ("hf_text", "text", "bert", TEXT, {}),
    "hf_text-clip": ("hf_text", "text", "clip", TEXT, {"pool": "pooler"}),
    "hf_text-siglip": ("hf_text", "text", "siglip", TEXT, {}),
    "hf_text-bert-tokens": ("hf_text", "text", "bert", TEXT, {"pool": "tokens"}),
    "sentence_transformer": ("sentence_transformer", "text", "st", TEXT, {}),
    "hf_vision-vit": ("hf_vision", "image", "vit", {"size": [30, 30], "channels": 3}, {}),
    "hf_vision-siglip-tokens": ("hf_vision", "image", "siglip", {"size": [30, 30], "channels": 3}, {"pool": "tokens"}),
    "hf_audio-whisper": ("hf_audio", "audio", "whisper", {"sample_rate": 16000, "max_seconds": 0.4}, {"pool": "tokens"}),
    "hf_audio-ast": ("hf_audio", "audio", "ast", {"sample_rate": 16000, "max_seconds": 0.4}, {}),
    "efficientnet_lite0": ("efficientnet_lite0", "image", None, {"size": [32, 32], "channels": 3}, {"pool": "tokens"}),
}


@pytest.fixture(params=list(CASES))
def build(request, tiny):
    name, kind, model, spec_options, options = CASES[request.param]
    if name == "efficientnet_lite0":
        pytest.importorskip("efficientnet_lite_pytorch")
    if model is not None:
        options = {**options, "path": str(tiny(model))}

    def make(**extra):
        torch.manual_seed(0)
        return ENCODERS.build(name, make_spec(kind, **spec_options), DIM, **{**options, **extra})

    return make


def test_every_pretrained_encoder_is_covered():
    names = {n for n in ENCODERS.names() if getattr(ENCODERS.get(n), "needs_weights", False)}
    covered = {c[0] for c in CASES.values()} | {"minilm"} | {"timm", "open_clip"}  # minilm: test_shipped.py
    assert names <= covered, names - covered


def test_contract(build):
    enc = build().eval()
    assert isinstance(enc, PretrainedEncoder)
    g = torch.Generator().manual_seed(1)
    inputs = make_inputs(enc.spec, B, g)
    with torch.no_grad():
        out = enc(inputs, PRESENT)
        assert out.x.shape[0] == B and out.x.shape[2] == DIM and torch.equal(out.present, PRESENT)
        assert torch.isfinite(out.x).all() and out.mask[PRESENT].any(1).all()
        # padding beyond length is ignored
        full = enc(inputs, torch.ones(B, dtype=torch.bool))
        assert_real_close(full, enc(perturb_padding(enc.spec, inputs, g), torch.ones(B, dtype=torch.bool)))
        # batch independence, and absent rows change nothing
        for i in range(B):
            one = enc(select(inputs, [i]), PRESENT[[i]])
            assert_real_close(Tokens(out.x[[i]], out.mask[[i]], PRESENT[[i]]), one)
        noisy = make_inputs(enc.spec, B, torch.Generator().manual_seed(4))
        mixed = {k: torch.where(PRESENT.view(-1, *[1] * (v.dim() - 1)), v, noisy[k]) for k, v in inputs.items()}
        assert_real_close(out, enc(mixed, PRESENT))
        # nothing present at all
        none = enc({k: torch.zeros_like(v) for k, v in inputs.items()}, torch.zeros(B, dtype=torch.bool))
        assert torch.isfinite(none.x).all() and none.mask.any(1).all()
    # deterministic, and the same with and without the cache
    again = build(cache=False).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(inputs, PRESENT).x, out.x, atol=1e-5, rtol=0)


def test_frozen_by_default_gradients_reach_the_projection(build):
    enc = build().train()
    assert not enc.backbone.training  # frozen: eval mode whatever train() says
    assert [n for n, p in enc.named_parameters() if p.requires_grad] == ["proj.weight", "proj.bias"]
    out = enc(make_inputs(enc.spec, B, torch.Generator().manual_seed(6)), PRESENT)
    out.pooled().sum().backward()
    assert enc.proj.weight.grad is not None and enc.proj.weight.grad.abs().sum() > 0


def test_trainable_backbone_gets_gradients(build):
    enc = build(trainable=True).train()
    assert enc.backbone.training and enc.cache is None
    out = enc(make_inputs(enc.spec, B, torch.Generator().manual_seed(6)), PRESENT)
    out.pooled().sum().backward()
    grads = [p.grad for p in enc.backbone.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    assert len(enc.lr_scaled_parameters()) == sum(1 for p in enc.backbone.parameters() if p.requires_grad)


def test_rejects_wrong_kind(build):
    enc = build()
    other = "tabular"
    with pytest.raises(ValueError, match="handles kinds"):
        type(enc)(make_spec(other), DIM)


def test_state_dict_leaves_out_the_frozen_backbone(build):
    enc = build()
    keys = list(enc.state_dict())
    assert keys == ["proj.weight", "proj.bias"]
    fresh = build()
    fresh.load_state_dict(enc.state_dict())  # strict: the backbone comes from the source
    assert torch.equal(fresh.proj.weight, enc.proj.weight)
    assert any(k.startswith("backbone.") for k in build(trainable=True).state_dict())
