"""timm and open_clip adapters. The real libraries need torchvision, which this environment cannot install beside
the CPU torch, so the adapters are tested against small stand-in modules with the same API (create_model,
forward_features / forward_head, data config; encode_image / encode_text, get_tokenizer), plus the errors that
name the pip extra."""

from __future__ import annotations

import sys
import types

import pandas as pd
import pytest
import torch
from torch import nn

from polymodal.data.kinds import DecodeContext, get_processor
from polymodal.data.schema import ModalitySpec
from polymodal.encoders import ENCODERS
from polymodal.encoders.pretrained import MissingExtraError
from polymodal.errors import PolymodalError, SchemaError


# ------------------------------------------------------------------------------------------------ stand-ins
class FakeTimmNet(nn.Module):
    num_features = 8

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.head = nn.Linear(8, 5)

    def forward_features(self, x):
        return self.stem(x)

    def forward_head(self, x, pre_logits=False):
        x = x.mean((2, 3))
        return x if pre_logits else self.head(x)

    def reset_classifier(self, n):
        self.head = nn.Identity()


def fake_timm():
    mod = types.ModuleType("timm")

    def create_model(name, pretrained=False, checkpoint_path=None):
        torch.manual_seed(1)
        net = FakeTimmNet()
        if checkpoint_path:
            net.load_state_dict(torch.load(checkpoint_path, weights_only=True))
        elif pretrained and not name.startswith("local-dir:"):
            raise AssertionError("the adapter asked the hub")
        return net

    mod.create_model = create_model
    mod.data = types.SimpleNamespace(
        resolve_model_data_config=lambda net: {"input_size": (3, 16, 16), "mean": (0.5, 0.4, 0.3), "std": (0.2, 0.2, 0.2)}
    )
    return mod


class FakeCLIP(nn.Module):
    context_length = 10

    def __init__(self):
        super().__init__()
        self.visual = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 6))
        self.visual.image_size = 16
        self.token_embedding = nn.Embedding(50, 6)

    def encode_text(self, ids):
        assert ids.shape[1] == self.context_length
        m = (ids != 0).float()[..., None]
        return (self.token_embedding(ids) * m).sum(1) / m.sum(1).clamp_min(1)


def fake_open_clip():
    mod = types.ModuleType("open_clip")
    mod.__version__ = "0-test"

    def create_model(name, pretrained=None):
        torch.manual_seed(2)
        net = FakeCLIP()
        if pretrained:
            net.load_state_dict(torch.load(pretrained, weights_only=True))
        return net

    def get_tokenizer(name):
        def tok(texts, context_length=10):
            out = torch.zeros(len(texts), context_length, dtype=torch.long)
            for i, t in enumerate(texts):
                ids = [48] + [1 + (sum(map(ord, w)) % 40) for w in t.split()][: context_length - 2] + [49]
                out[i, : len(ids)] = torch.tensor(ids)
            return out

        tok.context_length = 10
        return tok

    mod.create_model, mod.get_tokenizer = create_model, get_tokenizer
    return mod


# ---------------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("name,module,extra,kind", [("timm", "timm", "timm", "image"), ("open_clip", "open_clip", "open_clip", "text")])
def test_missing_library_names_the_extra(monkeypatch, name, module, extra, kind):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    spec = ModalitySpec("m", kind, ["m"], {})
    with pytest.raises(MissingExtraError, match=rf"pip install 'polymodal\[{extra}\]'"):
        ENCODERS.build(name, spec, 16, model="x", weights=None)


def test_timm_adapter(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "timm", fake_timm())
    torch.manual_seed(3)
    ref = FakeTimmNet()
    torch.save(ref.state_dict(), tmp_path / "w.pth")
    spec = ModalitySpec("i", "image", ["i"], {})
    spec.options.update(ENCODERS.get("timm").preprocessing(spec, model="fake", weights=str(tmp_path / "w.pth")))
    assert spec.options["size"] == [16, 16] and spec.options["channels"] == 3 and "source_sha256" in spec.options
    enc = ENCODERS.build("timm", spec, 4, model="fake", weights=str(tmp_path / "w.pth")).eval()
    px = torch.rand(2, 3, 16, 16)
    norm = (px - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)) / 0.2
    with torch.no_grad():
        got, _ = enc.features({"pixels": px})
        want = ref.forward_head(ref.forward_features(norm), pre_logits=True)
    torch.testing.assert_close(got[:, 0], want)  # the checkpoint's weights, timm's normalisation
    assert enc({"pixels": px}, torch.ones(2, dtype=torch.bool)).x.shape == (2, 1, 4)
    assert list(enc.state_dict()) == ["proj.weight", "proj.bias"]
    with pytest.raises(PolymodalError, match="never downloads"):
        ENCODERS.build("timm", spec, 4, model="resnet50")


def test_open_clip_adapter(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "open_clip", fake_open_clip())
    torch.manual_seed(4)
    ref = FakeCLIP()
    torch.save(ref.state_dict(), tmp_path / "clip.pt")
    w = str(tmp_path / "clip.pt")
    # image tower
    ispec = ModalitySpec("i", "image", ["i"], {})
    ispec.options.update(ENCODERS.get("open_clip").preprocessing(ispec, model="fake", weights=w))
    assert ispec.options["size"] == [16, 16] and ispec.options["channels"] == 3
    img = ENCODERS.build("open_clip", ispec, 4, model="fake", weights=w).eval()
    px = torch.rand(2, 3, 16, 16)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(img.features({"pixels": px})[0][:, 0], ref.visual((px - mean) / std))
    # text tower, tokenised by open_clip's tokenizer through the text processor
    tspec = ModalitySpec("t", "text", ["t"], {})
    tspec.options.update(ENCODERS.get("open_clip").preprocessing(tspec, model="fake", weights=w))
    assert tspec.options["tokenizer"] == "open_clip:fake" and tspec.options["max_len_cap"] == 10
    frame = pd.DataFrame({"t": ["a red car", "the cat sat on a mat", None]})
    proc = get_processor("text")
    proc.fit(tspec, frame, DecodeContext())
    arrays, _ = proc.decode(tspec, frame, DecodeContext())
    assert arrays["length"].tolist() == [5, 8, 0] and arrays["ids"][0, 0] == 48 and arrays["ids"][0, 4] == 49
    txt = ENCODERS.build("open_clip", tspec, 4, model="fake", weights=w).eval()
    inputs = {k: torch.from_numpy(v) for k, v in arrays.items()}
    want = ref.encode_text(nn.functional.pad(inputs["ids"], (0, 10 - inputs["ids"].shape[1])))
    with torch.no_grad():
        torch.testing.assert_close(txt.features(inputs)[0][:2, 0], want[:2])
    with pytest.raises(PolymodalError, match="pool must be 'pooler'"):
        ENCODERS.build("open_clip", tspec, 4, model="fake", weights=w, pool="mean")


def test_open_clip_tokenizer_without_the_library(monkeypatch):
    monkeypatch.setitem(sys.modules, "open_clip", None)
    spec = ModalitySpec("t", "text", ["t"], {"tokenizer": "open_clip:ViT-B-32"})
    with pytest.raises(SchemaError, match=r"polymodal\[open_clip\]"):
        get_processor("text").fit(spec, pd.DataFrame({"t": ["a"]}), DecodeContext())
