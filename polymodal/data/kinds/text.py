"""Text processor: strings -> ``ids`` int64 [N, L] (0 = padding, 1 = unknown) and ``length`` int64 [N].

The tokenizer is deliberately simple, deterministic and offline: lowercase, then ``\\w+|[^\\w\\s]`` (words and
single punctuation marks). Options (fitted unless the user set them):

* ``vocab``: ``["<pad>", "<unk>", tokens...]`` with tokens of count >= ``min_count`` (default 1) ordered by
  descending count, then alphabetically; the whole list (specials included) holds at most ``max_vocab``
  (default 20000) entries;
* ``max_len``: the 95th percentile of training token counts (rounded up), between 1 and 256.

A present text that tokenises to nothing is encoded as a single ``<unk>`` (length 1).
"""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np
import pandas as pd

from ...errors import SchemaError
from ..schema import ModalitySpec, is_missing
from ._common import CellError, describe, fail, rows_and_values
from .base import PROCESSORS, DecodeContext, Processor

PAD, UNK = "<pad>", "<unk>"
MAX_LEN_CAP = 256
_TOKEN = re.compile(r"\w+|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Lowercased words and single punctuation marks."""
    return _TOKEN.findall(text.lower())


def build_vocab(texts, min_count: int = 1, max_vocab: int = 20000) -> list[str]:
    counts: Counter[str] = Counter()
    for t in texts:
        counts.update(tokenize(t))
    counts.pop(PAD, None)
    counts.pop(UNK, None)
    tokens = sorted((tok for tok, c in counts.items() if c >= min_count), key=lambda tok: (-counts[tok], tok))
    return [PAD, UNK] + tokens[: max(0, max_vocab - 2)]


@PROCESSORS.register("text")
class TextProcessor(Processor):
    """Free text -> token ids int64 [N, L] (regex word tokenizer, vocabulary fitted on training text)."""

    kind = "text"

    def fit(self, spec: ModalitySpec, frame: pd.DataFrame, ctx: DecodeContext) -> None:
        opts = spec.options
        if "vocab" in opts and "max_len" in opts:
            return
        texts = [v for v in frame[spec.column].tolist() if isinstance(v, str) and not is_missing(v)]
        if "vocab" not in opts:
            opts.setdefault("min_count", 1)
            opts.setdefault("max_vocab", 20000)
            opts["vocab"] = build_vocab(texts, int(opts["min_count"]), int(opts["max_vocab"]))
        if "max_len" not in opts:
            counts = [len(tokenize(t)) for t in texts]
            p95 = math.ceil(float(np.percentile(counts, 95)) - 1e-9) if counts else 1
            opts["max_len"] = int(min(max(p95, 1), MAX_LEN_CAP))

    def decode(
        self, spec: ModalitySpec, frame: pd.DataFrame, ctx: DecodeContext
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        vocab = spec.options.get("vocab")
        try:
            max_len = int(spec.options["max_len"])
        except (KeyError, TypeError, ValueError):
            max_len = 0
        if not isinstance(vocab, list) or list(vocab[:2]) != [PAD, UNK] or max_len < 1:
            raise SchemaError(
                f"modality {spec.name!r}: options vocab (a list starting with {PAD!r}, {UNK!r}) and max_len "
                "(a positive int) are required; fit the schema on a training table first"
            )
        lookup = {tok: i for i, tok in enumerate(vocab)}
        n, col = len(frame), spec.column
        ids = np.zeros((n, max_len), dtype=np.int64)
        length = np.zeros(n, dtype=np.int64)
        present = np.zeros(n, dtype=bool)
        n_missing = 0
        for i, row, v in rows_and_values(frame, col):
            if is_missing(v):
                n_missing += 1
                continue
            if not isinstance(v, str):
                fail(
                    ctx,
                    row,
                    col,
                    CellError(
                        f"expected text, got {describe(v)}",
                        hint="convert the column to strings (e.g. df[col].astype(str)) if the values are meant as "
                        f"text, give the column another kind (kinds={{{col!r}: 'tabular'}}), or pass "
                        "on_error='missing' (CLI: --on-error missing)",
                    ),
                )
                continue
            toks = [lookup.get(t, 1) for t in tokenize(v)[:max_len]] or [1]
            ids[i, : len(toks)] = toks
            length[i] = len(toks)
            present[i] = True
        ctx.report.add_missing(col, n_missing)
        return {"ids": ids, "length": length}, present
