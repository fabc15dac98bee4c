"""Text processor: vocabulary, ids, lengths; wrong cell types."""


import pandas as pd
import pytest

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
    assert "expected text, got int" in str(info.value)
    _, present, ctx, _ = run("text", frame, on_error="missing")
    assert present.tolist() == [True, False, True] and ctx.report.errors == {"review": 1}
