"""The per-kind processor contract: fit options on the training table, decode a column to fixed-size arrays.

Every kind (image, depth, audio, text, tabular, timeseries) has one ``Processor`` registered under its kind name.
A processor turns the column(s) of one ``ModalitySpec`` into a dict of numpy arrays whose first axis is the row,
plus a ``present[N]`` bool array. Batches are then plain slices of these arrays (``data/dataset.py``), so decoding
happens once per table, not once per epoch.

Array keys per kind (the contract the matching encoders read):

=============  ===========================================================================================
image / depth  ``pixels`` float32 [N, C, H, W] (image: [0, 1]; depth: standardised with fitted mean/std)
audio          ``wave`` float32 [N, T] at ``options['sample_rate']``; ``length`` int64 [N] (real samples)
text           ``ids`` int64 [N, L] (0 = padding, 1 = unknown); ``length`` int64 [N]
tabular        ``num`` float32 [N, Fn] (standardised, 0 where missing), ``num_mask`` bool [N, Fn];
               ``cat`` int64 [N, Fc] (0 = missing/unseen), ``cat_mask`` bool [N, Fc]
timeseries     ``series`` float32 [N, T, C] (standardised per channel); ``length`` int64 [N]
=============  ===========================================================================================

Rows whose modality is missing (``present=False``) hold zeros of the right shape.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polymodal.registry import Registry
from polymodal.data.schema import ModalitySpec


BAD_VALUE = "bad value"  # the decode report's cause for a cell whose value (not a file) is unusable


@dataclass
class DecodeReport:
    """What decoding met besides usable values. Two categories of cells, never both for one cell:

    * ``missing``: column -> cells that were empty (None/NaN/NA/blank string). Normal, not an error.
    * ``errors``: column -> cells that held something but failed to decode (an absent, empty, corrupt or
      truncated file, a NaN in a series, a value of the wrong type or shape) and were treated as missing
      (``on_error='missing'``; under ``'raise'`` the first one raises). ``causes`` counts the same cells by
      cause (``"absent file"``, ``"corrupt image"``, ``"truncated audio file"``, ``"bad value"``, ...);
      ``examples`` keeps the first few with their row, column, file, cause and problem.

    ``summary()`` says it in one line: ``3 values treated as missing (2 absent files, 1 corrupt image)``.
    """

    errors: dict[str, int] = field(default_factory=dict)  # column -> count of undecodable values
    examples: list[dict[str, Any]] = field(default_factory=list)  # first few: row, column, file, cause, problem
    missing: dict[str, int] = field(default_factory=dict)  # column -> count of empty cells
    dropped_rows: dict[str, int] = field(default_factory=dict)  # reason -> count (e.g. missing label)
    causes: dict[str, int] = field(default_factory=dict)  # cause -> count of undecodable values
    max_examples: int = 20

    def add_error(self, row: Any, column: str, problem: str, file: str | None = None, cause: str = BAD_VALUE) -> None:
        self.errors[column] = self.errors.get(column, 0) + 1
        self.causes[cause] = self.causes.get(cause, 0) + 1
        if len(self.examples) < self.max_examples:
            self.examples.append(
                {"row": _jsonable(row), "column": column, "file": file, "cause": cause, "problem": problem}
            )

    def add_missing(self, column: str, n: int = 1) -> None:
        if n:
            self.missing[column] = self.missing.get(column, 0) + n

    def merge(self, other: "DecodeReport") -> None:
        """Add another report's counts (e.g. the validation table's) to this one."""
        for mine, theirs in ((self.errors, other.errors), (self.missing, other.missing),
                             (self.dropped_rows, other.dropped_rows), (self.causes, other.causes)):
            for key, n in theirs.items():
                if n:
                    mine[key] = mine.get(key, 0) + n
        self.examples.extend(other.examples[: max(0, self.max_examples - len(self.examples))])

    @property
    def n_errors(self) -> int:
        return sum(self.errors.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "errors": dict(self.errors),
            "causes": dict(self.causes),
            "examples": list(self.examples),
            "missing": dict(self.missing),
            "dropped_rows": dict(self.dropped_rows),
        }

    def summary(self) -> str:
        """``3 values treated as missing (2 absent files, 1 corrupt image; by column: img=3); 4 empty cells
        (audio=4); rows dropped: missing label=1`` (or ``no decode errors``)."""
        parts = []
        if self.errors:
            n = self.n_errors
            causes = ", ".join(_count(k, c) for c, k in sorted(self.causes.items(), key=lambda x: (-x[1], x[0])))
            columns = ", ".join(f"{c}={k}" for c, k in self.errors.items())
            parts.append(f"{_count(n, 'value')} treated as missing ({causes}; by column: {columns})")
        if self.missing:
            columns = ", ".join(f"{c}={k}" for c, k in self.missing.items())
            parts.append(f"{_count(sum(self.missing.values()), 'empty cell')} ({columns})")
        if self.dropped_rows:
            parts.append("rows dropped: " + ", ".join(f"{r}={n}" for r, n in self.dropped_rows.items()))
        return "; ".join(parts) if parts else "no decode errors"


def _count(n: int, noun: str) -> str:
    """``1 corrupt image`` / ``2 absent files``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _jsonable(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


@dataclass
class DecodeContext:
    """Where relative file paths resolve from, what to do with undecodable values, and where reads may go.

    ``root``: when set, every file a cell names must resolve (symlinks followed) inside this folder; a path
    outside it (``../x.png``, an absolute path elsewhere, a symlink pointing out) is a decode error
    ``outside the allowed root``. ``None`` (the default, for local use) confines nothing: a cell may name any
    file the process can read. A server that decodes tables from untrusted users should set it.
    """

    base_dir: Path = Path(".")
    on_error: str = "raise"  # "raise" | "missing"
    report: DecodeReport = field(default_factory=DecodeReport)
    root: Path | None = None

    def __post_init__(self) -> None:
        if self.on_error not in ("raise", "missing"):
            raise ValueError(f"on_error must be 'raise' or 'missing', got {self.on_error!r}")
        self.base_dir = Path(self.base_dir)
        if self.root is not None:
            self.root = Path(self.root).expanduser().resolve()


class Processor(ABC):
    kind: str

    @abstractmethod
    def fit(self, spec: ModalitySpec, frame: pd.DataFrame, ctx: DecodeContext) -> None:
        """Fill ``spec.options`` with defaults and statistics learned from the training table.

        Options the user already set are kept. Must be JSON-serialisable.
        """

    @abstractmethod
    def decode(self, spec: ModalitySpec, frame: pd.DataFrame, ctx: DecodeContext) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Decode the spec's column(s) of every row: (arrays keyed as in the module docstring, present[N])."""


PROCESSORS: Registry[Processor] = Registry("modality kind")
