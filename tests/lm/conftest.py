"""Tiny offline LMs for the lm tests: a word-level tokenizer with a chat template, random Llama / GPT-2 weights."""

import pytest
import torch

WORDS = ("zero one two three four five six seven eight nine yes no standing walking running badminton which digit is "
         "written spoken what the person doing are and same answer in word activity this").split()
SPECIAL = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>", "system", "user", "assistant", "?", "."]
TEMPLATE = ("{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> {% endfor %}"
            "{% if add_generation_prompt %}<|im_start|> assistant {% endif %}")


def tiny_tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(dict.fromkeys(SPECIAL + list(WORDS)))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<|im_end|>",
                                   additional_special_tokens=["<|im_start|>"])
    fast.chat_template = TEMPLATE
    return fast


def tiny_llama(vocab: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=vocab, max_position_embeddings=256, eos_token_id=3,
                      pad_token_id=0, bos_token_id=2, tie_word_embeddings=False)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory):
    """A local Hugging Face folder: a random 3-layer Llama (width 32) and the word-level tokenizer."""
    d = tmp_path_factory.mktemp("tiny_llama")
    tok = tiny_tokenizer()
    tiny_llama(len(tok)).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tiny_lm(tiny_lm_dir):
    from polymodal.lm.source import load_lm

    return load_lm(tiny_lm_dir)


@pytest.fixture(scope="session")
def motion_encoders():
    """A small polymodal model fitted on BasicMotions (accel + gyro -> activity): its encoders feed the LM."""
    import polymodal as pm
    from polymodal.datasets import load_basicmotions

    return pm.fit(load_basicmotions("train"), label="activity", dim=16, epochs=3, progress=False, seed=0)
