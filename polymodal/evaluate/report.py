"""Readable tables (Rich) and Markdown for metrics dictionaries."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def metrics_table(res: dict[str, Any], task: str) -> Table:
    key = "accuracy" if task == "classify" else "rmse"
    second = "macro_f1" if task == "classify" else "r2"
    t = Table(title="evaluation")
    t.add_column("modalities used")
    t.add_column("n", justify="right")
    t.add_column(key, justify="right")
    t.add_column(second, justify="right")
    m = res["metrics"]
    t.add_row("all", str(m["n"]), f"{m[key]:.4f}", f"{m[second]:.4f}")
    for name, sm in res.get("subsets", {}).items():
        t.add_row(f"only {name}", str(sm["n"]), f"{sm[key]:.4f}", f"{sm[second]:.4f}")
    return t


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)
