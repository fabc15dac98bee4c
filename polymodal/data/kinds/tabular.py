"""Tabular processor: several numeric / categorical columns -> ``num``/``num_mask`` and ``cat``/``cat_mask``.

A column is numeric when its pandas dtype is numeric or bool at fit time, otherwise categorical (strings that
merely look numeric stay categorical: no guessing). Options (fitted unless the user set them):

* ``numeric``: ``{column: {"mean": m, "std": s}}`` over the finite training values (std floored at 1e-6);
* ``categorical``: ``{column: [category strings, sorted]}``; a value's index is its position + 1, and 0 stands
  for a missing or unseen value.

Features follow the order of ``spec.columns``. A missing value (None/NaN/blank) sets that feature's mask False;
an unseen category is encoded 0 with mask True (the value exists, the model just does not know it); a row is
present when at least one of its features is. ``+-inf`` in a numeric column is a decode error, and so is a finite
value whose standardised form ``(x - mean) / std`` exceeds ``_common.MAX_SCALED`` (1e6) in magnitude or is not
finite in float32 (such as 1e25 with training values near 1: it would overflow inside the network and come back
as NaN predictions); under ``on_error='missing'`` only that feature is treated as missing, counted as ``bad
value``. The fitted mean/std use only the values finite in float32.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from polymodal.errors import SchemaError
from polymodal.data.schema import ModalitySpec, is_missing
from polymodal.data.kinds._common import MAX_SCALED, CellError, describe, fail, float32_finite, std_floor
from polymodal.data.kinds.base import PROCESSORS, DecodeContext, Processor


def is_numeric_column(series: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype))


def category_key(v) -> str:
    """The string a categorical value is known by (the same at fit and decode time)."""
    if isinstance(v, (np.generic,)):
        v = v.item()
    return v if isinstance(v, str) else str(v)


def _float_column(series: pd.Series) -> np.ndarray | None:
    """The column as float64 with NaN for missing, or None when it holds non-numbers (object dtype)."""
    if is_numeric_column(series) and not pd.api.types.is_complex_dtype(series):
        try:
            return series.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):
            return None
    return None


@PROCESSORS.register("tabular")
class TabularProcessor(Processor):
    """Numeric and categorical columns -> num float32 [N, Fn] (standardised) + cat int64 [N, Fc], with masks."""

    kind = "tabular"

    def fit(self, spec: ModalitySpec, frame: pd.DataFrame, ctx: DecodeContext) -> None:
        opts = spec.options
        numeric = dict(opts.get("numeric") or {})
        categorical = dict(opts.get("categorical") or {})
        for col in spec.columns:
            if col in numeric or col in categorical:
                continue  # set by the user
            series = frame[col]
            values = _float_column(series)
            if values is None and (spec.evidence.get(col) or {}).get("as") == "numeric":
                # inference found a majority of numbers: the strays become bad values of a numeric column at decode
                values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            if values is not None:
                finite = values[float32_finite(values)]
                mean = float(finite.mean()) if finite.size else 0.0
                std = float(finite.std()) if finite.size else 1.0
                numeric[col] = {"mean": mean, "std": std_floor(std)}
            else:
                cats = {category_key(v) for v in series.tolist() if not is_missing(v)}
                categorical[col] = sorted(cats)
        opts["numeric"] = numeric
        opts["categorical"] = categorical

    def decode(
        self, spec: ModalitySpec, frame: pd.DataFrame, ctx: DecodeContext
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        numeric = spec.options.get("numeric")
        categorical = spec.options.get("categorical")
        if not isinstance(numeric, dict) or not isinstance(categorical, dict):
            raise SchemaError(
                f"modality {spec.name!r}: options numeric and categorical are required; "
                "fit the schema on a training table first"
            )
        unknown = [c for c in spec.columns if c not in numeric and c not in categorical]
        if unknown:
            raise SchemaError(
                f"modality {spec.name!r}: column(s) {unknown} have no fitted statistics; refit the schema"
            )
        num_cols = [c for c in spec.columns if c in numeric]
        cat_cols = [c for c in spec.columns if c in categorical and c not in numeric]
        n = len(frame)
        rows = frame.index.tolist()
        num = np.zeros((n, len(num_cols)), dtype=np.float32)
        num_mask = np.zeros((n, len(num_cols)), dtype=bool)
        cat = np.zeros((n, len(cat_cols)), dtype=np.int64)
        cat_mask = np.zeros((n, len(cat_cols)), dtype=bool)

        for j, col in enumerate(num_cols):
            values, n_err = self._numeric_values(frame[col], rows, col, ctx)
            bad = np.isinf(values)
            if bad.any():
                for i in np.flatnonzero(bad):
                    fail(
                        ctx,
                        rows[i],
                        col,
                        CellError(
                            f"the numeric value is {values[i]} (infinite)",
                            hint="replace infinities with a finite value or NaN (missing), or pass on_error='missing' "
                            "(CLI: --on-error missing)",
                        ),
                    )
                values = np.where(bad, np.nan, values)
            mask = ~np.isnan(values)
            ctx.report.add_missing(col, int((~mask).sum() - bad.sum()) - n_err)
            stats = numeric[col]
            mean, std = float(stats["mean"]), std_floor(float(stats["std"]))
            with np.errstate(over="ignore", invalid="ignore"):
                z = (np.where(mask, values, mean) - mean) / std
            huge = mask & ~(np.abs(z) <= MAX_SCALED)
            for i in np.flatnonzero(huge):
                fail(
                    ctx,
                    rows[i],
                    col,
                    CellError(
                        f"the numeric value {values[i]:.6g} is too large to use: {z[i]:.3g} training standard "
                        f"deviations from the training mean (mean {mean:.6g}, std {std:.6g}; the limit is "
                        f"{MAX_SCALED:g})",
                        hint="such a value overflows inside the network; fix it (a unit or parsing error?), clip "
                        "it, or pass on_error='missing' (CLI: --on-error missing) to treat it as missing",
                    ),
                )
            mask &= ~huge
            num[:, j] = np.where(mask, z, 0.0)
            num_mask[:, j] = mask

        for j, col in enumerate(cat_cols):
            lookup = {c: k + 1 for k, c in enumerate(categorical[col])}
            n_missing = 0
            for i, v in enumerate(frame[col].tolist()):
                if is_missing(v):
                    n_missing += 1
                    continue
                cat[i, j] = lookup.get(category_key(v), 0)
                cat_mask[i, j] = True
            ctx.report.add_missing(col, n_missing)

        present = num_mask.any(axis=1) | cat_mask.any(axis=1)
        return {"num": num, "num_mask": num_mask, "cat": cat, "cat_mask": cat_mask}, present

    @staticmethod
    def _numeric_values(series: pd.Series, rows: list, col: str, ctx: DecodeContext) -> tuple[np.ndarray, int]:
        """float64 values (NaN = missing). A column trained as numeric may arrive as strings/objects at decode time:
        numbers and numeric strings are accepted, anything else is a decode error (or missing)."""
        values = _float_column(series)
        if values is not None:
            return values, 0
        out = np.full(len(series), np.nan)
        n_err = 0
        for i, v in enumerate(series.tolist()):
            if is_missing(v):
                continue
            try:
                if isinstance(v, (list, tuple, dict, np.ndarray, bytes, complex, np.complexfloating)):
                    raise TypeError  # complex: casting to real would drop the imaginary part
                try:
                    out[i] = float(v)
                except OverflowError:  # an int beyond float64: +-inf, refused below as too large to use
                    out[i] = np.inf if v > 0 else -np.inf
            except (TypeError, ValueError):
                n_err += 1
                fail(
                    ctx,
                    rows[i],
                    col,
                    CellError(
                        f"expected a number (the column was numeric at training time), got {describe(v)}",
                        hint="clean the column so it holds numbers only, or pass on_error='missing'",
                    ),
                )
        return out, n_err
