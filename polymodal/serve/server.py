"""``build_app`` (run folder -> app) and ``serve`` (the app under uvicorn): what ``polymodal serve`` runs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from polymodal.serve.config import ServeConfig, read_key_file

log = logging.getLogger("polymodal.serve")


def build_app(run: str | Path, config: ServeConfig | None = None, *, index: str | Path | None = None,
              api_key_file: str | Path | None = None):
    """Load the run (``pm.load``), its index and API keys, and build the app (``serve.app.create_app``)."""
    from polymodal.recipes.loading import load
    from polymodal.serve.app import create_app

    cfg = config or ServeConfig()
    if api_key_file is not None:
        cfg.api_key_hashes = read_key_file(api_key_file)
    model = load(run)
    idx: Any = None
    if index is not None:
        from polymodal.errors import PolymodalError
        from polymodal.index import Index
        from polymodal.serve.search import check_index

        if not Path(index).is_dir():
            raise PolymodalError(f"--index {str(index)!r} is not a folder; build one with `polymodal index build`")
        idx = Index(index, model)
        check_index(idx, run)
    return create_app(model, cfg, index=idx, run=run)


def serve(run: str | Path, *, host: str = "127.0.0.1", port: int = 8000, config: ServeConfig | None = None,
          index: str | Path | None = None, api_key_file: str | Path | None = None, log_level: str = "info") -> None:
    """Serve the run over HTTP until interrupted. Uvicorn refuses connections beyond the queue's size (503) before
    they are read, so a flood cannot hold unbounded memory in request bodies."""
    import uvicorn

    cfg = config or ServeConfig()
    app = build_app(run, cfg, index=index, api_key_file=api_key_file)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False,
                limit_concurrency=cfg.queue_size + 64, timeout_keep_alive=30)
