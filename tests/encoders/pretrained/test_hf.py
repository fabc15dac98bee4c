"""Hugging Face towers loaded through polymodal equal the library's own forward on the same input."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from polymodal.data.kinds import DecodeContext, get_processor
from polymodal.data.schema import ModalitySpec
from polymodal.encoders import ENCODERS
from polymodal.errors import PolymodalError

transformers = pytest.importorskip("transformers")

TEXTS = ["the cat sat on the mat", "a happy smiling dog!", None, "red car", "sad rain, blue sun."]
DIM = 16


def text_batch(name: str, folder, **options):
    """(encoder, inputs, present) for TEXTS decoded with the encoder's declared preprocessing."""
    spec = ModalitySpec("t", "text", ["t"], {})
    spec.options.update(ENCODERS.get(name).preprocessing(spec, path=str(folder), **options))
    frame = pd.DataFrame({"t": TEXTS})
    proc = get_processor("text")
    proc.fit(spec, frame, DecodeContext())
    arrays, present = proc.decode(spec, frame, DecodeContext())
    enc = ENCODERS.build(name, spec, DIM, path=str(folder), **options).eval()
    return enc, {k: torch.from_numpy(v) for k, v in arrays.items()}, torch.from_numpy(present)


def attention(inputs):
    ids, length = inputs["ids"], inputs["length"]
    return (torch.arange(ids.shape[1])[None] < length[:, None]).long()


def test_bert_tokens_and_mean_equal_the_library(tiny):
    folder = tiny("bert")
    enc, inputs, present = text_batch("hf_text", folder, pool="tokens")
    ref = transformers.AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        want = ref(input_ids=inputs["ids"], attention_mask=attention(inputs)).last_hidden_state
        got, mask = enc.features(inputs)
    assert torch.equal(mask[present], attention(inputs).bool()[present])
    real = mask & present[:, None]
    torch.testing.assert_close(got[real], want[real], atol=1e-5, rtol=0)
    # the default pooling is the masked mean (sentence-transformers style)
    enc_mean, _, _ = text_batch("hf_text", folder)
    with torch.no_grad():
        mean, one = enc_mean.features(inputs)
    w = attention(inputs)[..., None].float()
    torch.testing.assert_close(mean[present, 0], ((want * w).sum(1) / w.sum(1).clamp_min(1))[present], atol=1e-5, rtol=0)
    assert one.all() and mean.shape == (len(TEXTS), 1, 32)


def test_tokenizer_matches_the_library_tokenizer(tiny):
    folder = tiny("bert")
    _, inputs, present = text_batch("hf_text", folder)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    for i, t in enumerate(TEXTS):
        if t is None:
            assert not present[i]
            continue
        ids = tok.encode(t).ids
        n = int(inputs["length"][i])
        assert inputs["ids"][i, :n].tolist() == ids[:n] and n == min(len(ids), inputs["ids"].shape[1])
        assert (inputs["ids"][i, n:] == 0).all()


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_clip_and_siglip_text_towers(tiny, family):
    folder = tiny(family)
    enc, inputs, present = text_batch("hf_text", folder)  # default for CLIP / SigLIP: the pooled embedding
    assert enc.pool == "pooler"
    ref = transformers.AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        ids = torch.where(attention(inputs).bool(), inputs["ids"], torch.zeros_like(inputs["ids"]))
        if family == "clip":
            out = ref.text_model(input_ids=ids, attention_mask=attention(inputs))
        else:  # SigLIP's own usage: padding="max_length" (pad id 0 here, 40 positions), no attention mask
            out = ref.text_model(input_ids=torch.nn.functional.pad(ids, (0, 40 - ids.shape[1])))
        want = out.pooler_output
        if family == "clip":
            want = ref.text_projection(want)  # the text half of CLIP's shared space
        got, _ = enc.features(inputs)
    assert got.shape[-1] == (16 if family == "clip" else 32)
    torch.testing.assert_close(got[present, 0], want[present], atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ["vit", "clip", "siglip"])
def test_vision_towers(tiny, family):
    folder = tiny(family)
    spec = ModalitySpec("i", "image", ["i"], {})
    spec.options.update(ENCODERS.get("hf_vision").preprocessing(spec, path=str(folder)))
    assert spec.options["size"] == [30, 30] and spec.options["channels"] == 3 and len(spec.options["source_sha256"]) == 64
    enc = ENCODERS.build("hf_vision", spec, DIM, path=str(folder)).eval()
    ref = transformers.AutoModel.from_pretrained(folder).eval()
    px = torch.rand(3, 3, 30, 30, generator=torch.Generator().manual_seed(0))
    mean, std = (0.5, 0.5) if family != "clip" else (enc.mean, enc.std)
    with torch.no_grad():
        norm = (px - mean) / std
        if family == "vit":
            want = ref(pixel_values=norm).last_hidden_state[:, 0]  # default pool: the CLS token
        else:
            want = ref.vision_model(pixel_values=norm).pooler_output
            if family == "clip":
                want = ref.visual_projection(want)
        got, _ = enc.features({"pixels": px})
    torch.testing.assert_close(got[:, 0], want, atol=1e-5, rtol=0)


def test_whisper_encoder(tiny):
    folder = tiny("whisper")
    spec = ModalitySpec("a", "audio", ["a"], {"max_seconds": 0.5})
    spec.options.update(ENCODERS.get("hf_audio").preprocessing(spec, path=str(folder)))
    assert spec.options["sample_rate"] == 16000
    enc = ENCODERS.build("hf_audio", spec, DIM, path=str(folder), pool="tokens").eval()
    g = torch.Generator().manual_seed(0)
    wave = 0.1 * torch.randn(3, 8000, generator=g)
    length = torch.tensor([8000, 3000, 500])
    wave = wave * (torch.arange(8000)[None] < length[:, None])
    fe = transformers.WhisperFeatureExtractor(feature_size=16)
    clips = [wave[i, : length[i]].numpy() for i in range(3)]
    feats = fe(clips, sampling_rate=16000, return_tensors="pt", padding="max_length", max_length=50 * 160)
    ref = transformers.WhisperModel.from_pretrained(folder).eval()
    with torch.no_grad():
        want = ref.encoder(input_features=feats["input_features"]).last_hidden_state
        got, mask = enc.features({"wave": wave, "length": length})
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert mask.sum(1).tolist() == [25, 10, 2]  # encoder frames (2 mel hops each) covering the real clip


def test_ast(tiny):
    folder = tiny("ast")
    spec = ModalitySpec("a", "audio", ["a"], {"sample_rate": 16000, "max_seconds": 0.5})
    enc = ENCODERS.build("hf_audio", spec, DIM, path=str(folder)).eval()
    wave = 0.1 * torch.randn(2, 8000, generator=torch.Generator().manual_seed(1))
    length = torch.tensor([8000, 4000])
    fe = transformers.ASTFeatureExtractor(num_mel_bins=16, max_length=40)
    feats = fe([wave[0].numpy(), wave[1, :4000].numpy()], sampling_rate=16000, return_tensors="pt")
    ref = transformers.ASTModel.from_pretrained(folder).eval()
    with torch.no_grad():
        want = ref(input_values=feats["input_values"]).pooler_output
        got, _ = enc.features({"wave": wave, "length": length})
    torch.testing.assert_close(got[:, 0], want, atol=1e-5, rtol=0)


def test_sentence_transformer_folder_matches_sentence_transformers(tiny):
    st = pytest.importorskip("sentence_transformers")
    folder = tiny("st")
    enc, inputs, present = text_batch("sentence_transformer", folder)
    assert enc.pool == "cls" and enc.normalize
    model = st.SentenceTransformer(str(folder), device="cpu")
    want = model.encode([t for t in TEXTS if t is not None], convert_to_tensor=True)
    with torch.no_grad():
        got, _ = enc.features(inputs)
    torch.testing.assert_close(got[present, 0], want, atol=1e-5, rtol=0)


def test_projection_is_a_linear_map_of_the_features(tiny):
    enc, inputs, present = text_batch("hf_text", tiny("bert"))
    with torch.no_grad():
        feats, _ = enc.features(inputs)
        out = enc(inputs, present)
    assert out.x.shape == (len(TEXTS), 1, DIM)
    torch.testing.assert_close(out.x[present], enc.proj(feats[present]), atol=1e-6, rtol=0)


def test_no_hub_without_asking(tmp_path):
    spec = ModalitySpec("t", "text", ["t"], {})
    with pytest.raises(PolymodalError, match="never downloads"):
        ENCODERS.build("hf_text", spec, DIM, path="bert-base-uncased")
    with pytest.raises(PolymodalError, match="needs path"):
        ENCODERS.build("hf_vision", ModalitySpec("i", "image", ["i"], {}), DIM)
