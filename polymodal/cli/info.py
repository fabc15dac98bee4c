"""``polymodal list WHAT``, ``datasets list`` / ``datasets export`` and ``demo``: what exists, the built-in data,
and the main job on it.

``LISTS`` is the one table of what ``list`` can print: name -> a function returning ``{name: description}``
(a registered part's docstring summary, the presets, the datasets), imported only when asked for. A part's
description is the whole first paragraph of its docstring, not its first source line (which often stops
mid-sentence), printed verbatim (markup off).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import typer

from polymodal.cli import common as c


def summary(doc: Optional[str]) -> str:
    """The first paragraph of a docstring on one line (everything up to the first blank line)."""
    text = inspect.cleandoc(doc or "")
    return " ".join(text.split("\n\n", 1)[0].split())


def _describe(registry) -> dict[str, str]:
    return {name: summary(registry.get(name).__doc__) for name in registry.names()}


def _registry(module: str, attr: str) -> Callable[[], dict[str, str]]:
    def describe() -> dict[str, str]:
        return _describe(getattr(importlib.import_module(module), attr))

    return describe


def _corruptions() -> dict[str, str]:
    from polymodal.evaluate.corruptions import CORRUPTION_KINDS, CORRUPTIONS

    return {name: doc or f"for {', '.join(CORRUPTION_KINDS.get(name, ())) or 'any kind'}"
            for name, doc in _describe(CORRUPTIONS).items()}


def _presets() -> dict[str, str]:
    from polymodal.config import list_presets

    return list_presets()


def _datasets() -> dict[str, str]:
    from polymodal.datasets import DATASETS

    return {name: d["description"] for name, d in DATASETS.items()}


LISTS: dict[str, Callable[[], dict[str, str]]] = {
    "encoders": _registry("polymodal.encoders", "ENCODERS"),
    "fusions": _registry("polymodal.fusion", "FUSIONS"),
    "heads": _registry("polymodal.heads", "HEADS"),
    "reducers": _registry("polymodal.tokens", "REDUCERS"),
    "objectives": _registry("polymodal.objectives", "OBJECTIVES"),
    "kinds": _registry("polymodal.data.kinds", "PROCESSORS"),
    "connectors": _registry("polymodal.lm.connectors", "CONNECTORS"),
    "corruptions": _corruptions,
    "presets": _presets,
    "datasets": _datasets,
}


def _print(entries: dict[str, str]) -> None:
    from rich.text import Text

    for name, doc in entries.items():
        c.out.print(Text.assemble((name, "bold"), ": ", doc))


@c.guarded
def list_parts(what: str = typer.Argument(..., help=" | ".join(LISTS))) -> None:
    """List registered parts (encoders, fusions, ...), presets or datasets by name, one line each."""
    from polymodal.errors import UnknownNameError

    if what not in LISTS:
        raise UnknownNameError("list", what, LISTS)
    _print(LISTS[what]())


@c.guarded
def datasets_list() -> None:
    """List the built-in datasets."""
    _print(_datasets())


@c.guarded
def datasets_export(
    name: str = typer.Argument(..., help="Dataset name, e.g. av-digits"),
    out_dir: Path = typer.Argument(..., help="Folder to write files + Parquet manifests into"),
    limit: Optional[int] = typer.Option(None, help="Export only a class-stratified subset of this many rows per split"),
) -> None:
    """Write a built-in dataset as ordinary files (PNG, WAV) plus Parquet manifests."""
    from polymodal.datasets import DATASETS
    from polymodal.errors import UnknownNameError

    if name not in DATASETS:
        raise UnknownNameError("dataset", name, DATASETS)
    for split, p in DATASETS[name]["export"](out_dir, limit=limit).items():
        c.done(f"{split}:", p)


@c.guarded
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Where to write results.json and results.md"),
    epochs: int = typer.Option(15, help="Epochs per model (cosine schedule; best validation epoch kept)"),
    quick: bool = typer.Option(False, help="A 1-minute smoke version on a subset (for tests)"),
) -> None:
    """The main job on the bundled real data: unimodal baselines and three fusions on av-digits."""
    from polymodal.experiments.demo import run_demo

    run_demo(out, epochs=epochs, quick=quick, console=c.out)
