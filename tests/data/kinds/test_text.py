"""Text processor: vocabulary, ids, lengths; wrong cell types."""

from pathlib import Path

import pandas as pd
import pytest

import polymodal
from polymodal.errors import DecodeError

from ._helpers import assert_names, run


# ------------------------------------------------------------------------------------------------------- text
def test_text_vocab_ids_and_lengths():
    train = ["The cat sat.", "the dog sat!", "a cat", "cat"]
    arrays, present, _, spec = run("text", ["The cat sat.", "zebra cat", "...", "!!"], fit_cells=train)
    vocab = spec.options["vocab"]
    assert vocab[:2] == ["<pad>", "<unk>"]
    assert vocab[2:] == ["cat", "sat", "the", "!", ".", "a", "dog"]  # by count, then alphabetically
    assert spec.options["max_len"] == 4  # 95th percentile of [4, 4, 2, 1] rounded up
    ids, length = arrays["ids"], arrays["length"]
    assert ids.shape == (4, 4) and present.all()
    lookup = {t: i for i, t in enumerate(vocab)}
    assert ids[0].tolist() == [lookup["the"], lookup["cat"], lookup["sat"], lookup["."]]
    assert ids[1].tolist() == [1, lookup["cat"], 0, 0] and length[1] == 2  # unseen -> <unk>
    assert ids[2].tolist() == [lookup["."]] * 3 + [0]
    assert length[3] == 2 and ids[3, :2].tolist() == [lookup["!"]] * 2


def test_text_truncation_min_count_max_vocab_and_empty():
    train = ["a a a b b c"] * 3
    arrays, present, _, spec = run(
        "text", ["a b c d", "   \t"], fit_cells=train, options={"max_len": 2, "min_count": 4, "max_vocab": 3}
    )
    assert spec.options["vocab"] == ["<pad>", "<unk>", "a"]  # b has 6 >= 4 but max_vocab caps the list
    assert arrays["ids"].tolist() == [[2, 1], [0, 0]] and present.tolist() == [True, False]
    arrays, present, _, _ = run("text", ["@@"], options={"vocab": ["<pad>", "<unk>"], "max_len": 3})
    assert arrays["ids"].tolist() == [[1, 1, 0]]
    arrays, present, _, _ = run("text", ["\u200b"], options={"vocab": ["<pad>", "<unk>"], "max_len": 3})
    assert arrays["length"].tolist() == [1] and present.all()  # a zero-width space is text, not a blank cell


def test_text_number_in_text_column():
    frame = pd.DataFrame({"review": pd.Series(["good", 42, "bad"], index=["a", "b", "c"], dtype=object)})
    with pytest.raises(DecodeError) as info:
        run("text", frame)
    assert_names(info.value, "b", "review")
    assert "expected a string (text), got int (value 42)" in str(info.value)
    _, present, ctx, _ = run("text", frame, on_error="missing")
    assert present.tolist() == [True, False, True] and ctx.report.errors == {"review": 1}


# ------------------------------------------------------------------------------ a pretrained model's tokenizer
def _tokenizer_folder(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import models, normalizers, pre_tokenizers, processors

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "cat", "sat", "on", "mat", "!", "##s"]
    tok = tokenizers.Tokenizer(models.WordPiece({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    folder = tmp_path / "tok"
    folder.mkdir()
    tok.save(str(folder / "tokenizer.json"))
    return folder


def test_text_with_a_pretrained_tokenizer(tmp_path):
    folder = _tokenizer_folder(tmp_path)
    train = ["The cats sat!", "the cat", "cat on the mat", "zebra"]
    arrays, present, _, spec = run(
        "text", ["The cats sat on the mat!", None, "zebra"], fit_cells=train, options={"tokenizer": str(folder)}
    )
    opts = spec.options
    assert "vocab" not in opts and len(opts["tokenizer_sha256"]) == 64 and opts["max_len_cap"] == 512
    assert opts["max_len"] == 7  # 95th percentile of [7, 4, 6, 3] tokens, [CLS] and [SEP] included
    # truncation keeps the special tokens (the tokenizer truncates), padding is 0 beyond length
    assert arrays["ids"][0].tolist() == [2, 4, 5, 10, 6, 7, 3] and arrays["length"].tolist() == [7, 0, 3]
    assert arrays["ids"][2].tolist() == [2, 1, 3, 0, 0, 0, 0] and present.tolist() == [True, False, True]


def test_text_tokenizer_cap_package_refs_and_changes(tmp_path):
    folder = _tokenizer_folder(tmp_path)
    arrays, _, _, spec = run("text", ["the cat sat on the mat"], options={"tokenizer": str(folder), "max_len_cap": 4})
    assert spec.options["max_len"] == 4 and arrays["ids"][0].tolist() == [2, 4, 5, 3]
    from polymodal.data.kinds.text import resolve_tokenizer
    from polymodal.errors import SchemaError

    assert resolve_tokenizer("package:polymodal/data") == Path(polymodal.__file__).parent / "data"
    with pytest.raises(SchemaError, match="not installed"):
        resolve_tokenizer("package:no_such_package_xyz/model")
    with pytest.raises(SchemaError, match="never downloads"):
        run("text", ["a"], options={"tokenizer": "bert-base-uncased", "max_len": 4})
    # a changed tokenizer file is refused when decoding with the fitted schema
    path = folder / "tokenizer.json"
    path.write_text(path.read_text().replace('"mat"', '"hat"'))
    with pytest.raises(SchemaError, match="differs"):
        run("text", ["the mat"], options=dict(spec.options))
