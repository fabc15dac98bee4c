"""Tiny random Hugging Face models built locally and saved with ``save_pretrained`` (never a download).

Every test here runs with the feature cache in a temporary folder and the hub switched off.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "the", "cat", "dog", "sat", "on", "mat", "smiling", "face", "happy", "sad", "sun", "rain", "car", "red", "blue", "##s", "##ing", "##ed", ",", ".", "!"]


@pytest.fixture(autouse=True)
def _offline_and_private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("POLYMODAL_CACHE_DIR", str(tmp_path / "pm-cache"))
    monkeypatch.delenv("POLYMODAL_FEATURE_CACHE", raising=False)


def save_tokenizer(folder: Path) -> None:
    """A BERT-style WordPiece tokenizer.json over WORDS, built with the tokenizers library."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))


TEXT = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, vocab_size=len(WORDS))
VISION = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=30, patch_size=10)


def _build(kind: str):
    import transformers as T

    torch.manual_seed(0)
    if kind == "bert":
        return T.BertModel(T.BertConfig(**TEXT, max_position_embeddings=40, pad_token_id=0))
    if kind == "clip":
        return T.CLIPModel(
            T.CLIPConfig(
                text_config=dict(**TEXT, max_position_embeddings=40, pad_token_id=0, bos_token_id=2, eos_token_id=3),
                vision_config=VISION,
                projection_dim=16,
            )
        )
    if kind == "siglip":
        return T.SiglipModel(
            T.SiglipConfig(
                text_config=dict(**TEXT, max_position_embeddings=40, pad_token_id=0, bos_token_id=2, eos_token_id=3),
                vision_config=VISION,
            )
        )
    if kind == "vit":
        return T.ViTModel(T.ViTConfig(**VISION))
    if kind == "whisper":
        return T.WhisperModel(
            T.WhisperConfig(
                d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                encoder_ffn_dim=37, decoder_ffn_dim=37, num_mel_bins=16, max_source_positions=25,
                max_target_positions=8, vocab_size=20, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                decoder_start_token_id=1,
            )
        )
    if kind == "ast":
        return T.ASTModel(
            T.ASTConfig(
                hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, num_mel_bins=16,
                max_length=40, patch_size=16, frequency_stride=10, time_stride=10,
            )
        )
    raise KeyError(kind)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """tiny(kind) -> folder with a tiny random model of that kind (bert, clip, siglip, vit, whisper, ast, st)."""
    pytest.importorskip("transformers")
    made: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind in made:
            return made[kind]
        folder = tmp_path_factory.mktemp(f"tiny-{kind}")
        if kind == "st":  # a sentence-transformers folder: BERT in 0_Transformer, CLS pooling, Normalize
            sub = folder / "0_Transformer"
            _build("bert").save_pretrained(sub)
            save_tokenizer(sub)
            (sub / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 12, "do_lower_case": False}))
            (folder / "1_Pooling").mkdir()
            (folder / "1_Pooling" / "config.json").write_text(json.dumps({
                "word_embedding_dimension": 32, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False,
                "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
            }))
            (folder / "modules.json").write_text(json.dumps([
                {"idx": 0, "name": "0", "path": "0_Transformer", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
            ]))
        else:
            _build(kind).save_pretrained(folder)
            if kind in ("bert", "clip", "siglip"):
                save_tokenizer(folder)
        made[kind] = folder
        return folder

    return get
