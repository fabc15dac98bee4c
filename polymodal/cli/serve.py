"""``polymodal serve RUN``: the run behind an HTTP endpoint (FastAPI + uvicorn, dynamic micro-batching)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from polymodal.cli import common as c


@c.guarded
def serve(
    run: Path = typer.Argument(..., help="Run directory written by `polymodal fit` or `polymodal align`"),
    port: int = typer.Option(8000, min=0, max=65535, help="TCP port (0: any free port)"),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 exposes the server to the network)"),
    index: Optional[Path] = typer.Option(None, help="Index folder (`polymodal index build`): enables POST /search"),
    api_key_file: Optional[Path] = typer.Option(None, help="File with the accepted API keys, one a line (or "
                                                "sha256:<hex digest>); without it no key is needed"),
    max_batch: Optional[int] = typer.Option(None, min=1, help="Most records in one inference batch [64]"),
    max_wait_ms: Optional[float] = typer.Option(None, min=0, help="How long a request waits for others to join "
                                                "its batch, in ms [5]"),
    queue_size: Optional[int] = typer.Option(None, min=1, help="Most requests waiting; more get 429 [256]"),
    timeout_s: Optional[float] = typer.Option(None, min=0.001, help="Per-request timeout, seconds (504) [30]"),
    max_body_mb: Optional[float] = typer.Option(None, min=0.001, help="Largest request body, MiB (413) [32]"),
    max_file_mb: Optional[float] = typer.Option(None, min=0.001, help="Largest uploaded file, MiB (413) [16]"),
    threads: Optional[int] = typer.Option(None, min=1, help="torch threads of the inference thread [min(4, CPUs)]"),
    backend: Optional[str] = typer.Option(None, help="Task-head backend: torch | onnx (an exported run) [torch]"),
    onnx: Optional[Path] = typer.Option(None, help="The exported graph for --backend onnx [RUN/model.onnx]"),
    log_level: str = typer.Option("info", help="uvicorn log level: critical | error | warning | info | debug"),
) -> None:
    """Serve a trained run: POST /predict, /embed, /search; GET /healthz, /readyz, /metrics, /info.
    Stop with Ctrl-C."""
    from polymodal.errors import PolymodalError
    from polymodal.serve.config import ServeConfig
    from polymodal.serve.server import serve as serve_run

    options = c.given(max_batch=max_batch, max_wait_ms=max_wait_ms, queue_size=queue_size, timeout_s=timeout_s,
                      threads=threads, backend=backend, onnx=None if onnx is None else str(onnx),
                      max_body_bytes=None if max_body_mb is None else int(max_body_mb * 2**20),
                      max_file_bytes=None if max_file_mb is None else int(max_file_mb * 2**20))
    if log_level not in ("critical", "error", "warning", "info", "debug"):
        raise PolymodalError(f"--log-level must be one of critical, error, warning, info, debug; got {log_level!r}")
    cfg = ServeConfig(**options)
    if not run.is_dir():
        raise PolymodalError(f"run folder {str(run)!r} does not exist (train one with `polymodal fit`)")
    if host not in ("127.0.0.1", "localhost", "::1") and api_key_file is None:
        c.note(f"warning: serving on {host} without --api-key-file: anyone who can reach it can use the model")
    serve_run(run, host=host, port=port, config=cfg, index=index, api_key_file=api_key_file, log_level=log_level)
