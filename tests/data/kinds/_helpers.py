"""Shared helpers for the per-kind processor tests: fit-then-decode one column, check error messages."""

import pandas as pd

from polymodal.data.kinds import PROCESSORS, DecodeContext
from polymodal.data.schema import ModalitySpec
from polymodal.errors import DecodeError

N_IMG = 12


def run(kind, cells, *, options=None, on_error="raise", base_dir=".", index=None, fit_cells=None, columns=None):
    """Fit on ``fit_cells`` (default: the same cells) then decode ``cells``; returns arrays, present, ctx, spec."""
    frame = cells if isinstance(cells, pd.DataFrame) else pd.DataFrame({"col": pd.Series(cells, dtype=object)})
    if index is not None:
        frame.index = index
    spec = ModalitySpec("m", kind, columns or list(frame.columns), dict(options or {}))
    proc = PROCESSORS.build(kind)
    fit_frame = frame if fit_cells is None else (
        fit_cells if isinstance(fit_cells, pd.DataFrame) else pd.DataFrame({"col": pd.Series(fit_cells, dtype=object)})
    )
    proc.fit(spec, fit_frame, DecodeContext(base_dir=base_dir))
    ctx = DecodeContext(base_dir=base_dir, on_error=on_error)
    arrays, present = proc.decode(spec, frame, ctx)
    return arrays, present, ctx, spec


def assert_names(err: DecodeError, row, column="col", file=None):
    msg = str(err)
    assert f"row {row!r}" in msg and f"column {column!r}" in msg, msg
    if file is not None:
        assert file in msg, msg
    assert "What to do" in msg

