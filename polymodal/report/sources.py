"""What a report is made of: the run folders and result JSON files named on the command line, read and recognised.

A report source is a run folder (``fit`` / ``align --out``), an output folder (``compare --out``, ``robustness
--out``), or one JSON file (``evaluate --out``, ``bench tokens --out``, ``explain``'s ``.summary.json``). A folder
is scanned: its own run files (``config.json``, ``schema.json``, ``report.json``, read with ``recipes.runs.read_run``,
so a torn run is refused as everywhere) and every ``*.json`` in it and in its direct subfolders (``rob/``), each
recognised by its keys (``KINDS``). A JSON file given alone also brings the run folder it sits in, when it sits in
one. Files that are not JSON, or JSON of no known shape, are skipped while scanning and refused when named.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from polymodal.data.schema import Schema
from polymodal.errors import PolymodalError
from polymodal.recipes.runs import MANIFEST, RUN_FILES, read_run

MAX_JSON_BYTES = 64 * 2**20  # a result JSON larger than this is not read (the biggest ones hold a few MB)
SKIP_DIRS = ("checkpoints", "models")  # compare --save-models: each model is a run of its own


def _is(*keys: str) -> Callable[[dict[str, Any]], bool]:
    return lambda d: all(k in d for k in keys)


# kind -> test on a JSON object, in the order they are tried (the first match wins)
KINDS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "compare": _is("models", "runs"),
    "robustness": _is("metric", "clean"),
    "tokens": _is("curve", "tokens_full"),
    "retrieval": _is("retrieval", "modality_gap"),
    "explain": _is("method", "mean_abs"),
    "evaluation": lambda d: isinstance(d.get("metrics"), dict) and "n" in d["metrics"],
}


@dataclass
class Found:
    """One recognised result file: its kind (a key of ``KINDS``), its path relative to the source, its data."""

    kind: str
    file: str
    data: dict[str, Any]


@dataclass
class RunData:
    """Everything one report column shows: the run's config, schema and training report (when the source is or
    sits in a run folder) and the recognised result files."""

    name: str
    path: Path
    config: dict[str, Any] | None = None
    schema: Schema | None = None
    info: dict[str, Any] = field(default_factory=dict)
    found: list[Found] = field(default_factory=list)
    run_dir: Path | None = None  # the run folder (config + schema + weights), when the source is or sits in one
    stale: list[str] = field(default_factory=list)  # result files older than the run saved in the folder
    examples: dict[str, Any] | None = None  # filled by examples.py when the report is given a table

    def first(self, kind: str) -> dict[str, Any] | None:
        """The data of the first result file of ``kind`` (files are read in name order), or None."""
        return next((f.data for f in self.found if f.kind == kind), None)

    def all(self, kind: str) -> list[Found]:
        return [f for f in self.found if f.kind == kind]

    @property
    def run_type(self) -> str | None:
        return None if self.config is None else str(self.config.get("run_type", "model"))

    @property
    def task(self) -> str | None:
        return None if self.schema is None else self.schema.task

    @property
    def classes(self) -> list[Any] | None:
        return None if self.schema is None else self.schema.classes


def _read_json(path: Path, *, named: bool) -> dict[str, Any] | None:
    """A JSON object from ``path``; None for what a scan skips; a clear error for a file named on the command line."""
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise ValueError(f"it is {size / 2**20:.0f} MB, over the {MAX_JSON_BYTES // 2**20} MB a report reads")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        if named:
            raise PolymodalError(f"cannot read {str(path)!r} for the report: {e}".splitlines()[0]) from None
        return None
    if not isinstance(data, dict):
        if named:
            raise PolymodalError(f"{str(path)!r} holds a JSON {type(data).__name__}, not a polymodal result object")
        return None
    return data


def recognise(data: dict[str, Any]) -> str | None:
    """The kind of a result JSON object (a key of ``KINDS``), or None."""
    return next((kind for kind, test in KINDS.items() if test(data)), None)


def _is_run_folder(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "schema.json").is_file()


def _saved_at(folder: Path) -> float | None:
    """When the run in ``folder`` was saved (its manifest's mtime), or None for a folder without a run."""
    try:
        return (folder / MANIFEST).stat().st_mtime if _is_run_folder(folder) else None
    except OSError:
        return None


def _scan(folder: Path, stale: list[str]) -> list[Found]:
    """The result files of a folder. In a run folder, those older than the run (``--overwrite`` carries an earlier
    model's ``eval.json`` into the new folder) describe another model: they are listed in ``stale``, not shown."""
    found = []
    saved = _saved_at(folder)
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")
                     and p.name not in SKIP_DIRS and ".new-" not in p.name and ".old-" not in p.name
                     and not _is_run_folder(p))
    for d in (folder, *subdirs):
        for f in sorted(d.glob("*.json")):
            if d == folder and f.name in RUN_FILES + (MANIFEST,):
                continue
            data = _read_json(f, named=False) if f.is_file() else None
            kind = None if data is None else recognise(data)
            if kind is None:
                continue
            if saved is not None and f.stat().st_mtime < saved - 1.0:
                stale.append(os.path.relpath(f, folder))
                continue
            found.append(Found(kind, os.path.relpath(f, folder), data))
    return found


def _load_run(run: RunData, folder: Path) -> None:
    run.config, run.schema, run.info = read_run(folder)
    run.run_dir = folder


def read_source(path: str | Path, name: str | None = None) -> RunData:
    """One report column from a run folder, an output folder or a result JSON file (see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise PolymodalError(f"{str(path)!r} does not exist: give a run folder (fit / align --out), an output "
                             "folder (compare / robustness --out) or a JSON file (evaluate / bench tokens --out)")
    run = RunData(name or (path.name if path.is_dir() else path.stem), path)
    if path.is_dir():
        if _is_run_folder(path):
            _load_run(run, path)
        run.found = _scan(path, run.stale)
        if run.config is None and not run.found:
            raise PolymodalError(f"{str(path)!r} holds no run (config.json, schema.json) and no result JSON that a "
                                 "report shows (from evaluate, compare, robustness, bench tokens or explain)")
        return run
    data = _read_json(path, named=True)
    kind = recognise(data or {})
    if kind is None:
        raise PolymodalError(f"{str(path)!r} is not a result file a report shows: expected the JSON written by "
                             "evaluate, compare, robustness, bench tokens or explain (keys such as 'metrics', "
                             "'models', 'clean', 'curve')")
    run.found = [Found(kind, path.name, data)]  # type: ignore[arg-type]
    if _is_run_folder(path.parent):
        _load_run(run, path.parent)
    return run


def read_sources(paths: list[str | Path]) -> list[RunData]:
    """One ``RunData`` per path, named by the folder or file name; repeated names get ``#2``, ``#3``."""
    runs = [read_source(p) for p in paths]
    seen: dict[str, int] = {}
    for r in runs:
        seen[r.name] = seen.get(r.name, 0) + 1
        if seen[r.name] > 1:
            r.name = f"{r.name}#{seen[r.name]}"
    return runs
