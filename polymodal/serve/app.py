"""``create_app``: the FastAPI app of one trained run.

Routes: ``POST /predict`` (runs with a task head), ``POST /embed`` (runs with a shared space: ``align`` runs and
``fit(align=...)`` runs), ``POST /search`` (with an index), ``GET /info``, ``GET /healthz`` (the process answers),
``GET /readyz`` (the inference workers run: 503 before start-up and during shutdown) and ``GET /metrics``
(Prometheus text, ``serve/metrics.py``). The model routes need an API key when the config holds any
(``Authorization: Bearer KEY`` or ``X-API-Key: KEY``; 401 without); health, readiness and metrics do not.

Every answer to bad input is a 4xx with ``{"detail": message}``: ``RequestError`` carries its own status (413,
415, 422), any other ``PolymodalError`` is a 422; an exception of any other type is a bug, logged with its
traceback and answered 500.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import weakref
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import torch
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from polymodal import __version__
from polymodal.errors import PolymodalError
from polymodal.serve.batching import Item, MicroBatcher, NotRunning, QueueFull
from polymodal.serve.config import ServeConfig, key_matches
from polymodal.serve.decoding import decode_batch
from polymodal.serve.infer import Runner
from polymodal.serve.inputs import RequestError, fields_of, form_records, json_records
from polymodal.serve.metrics import Metrics, MetricsMiddleware
from polymodal.serve.openapi import ERRORS, request_body
from polymodal.serve.search import SearchRoute

log = logging.getLogger("polymodal.serve")
BODY_TYPES = ("application/json", "multipart/form-data")
MAX_FORM_FIELD = 1 * 2**20  # the largest non-file form field (a text, a JSON series)


def _api_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.headers.get("x-api-key")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is over ``limit`` bytes (the declared length is checked first)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(f"the body is {int(declared):,} bytes, over the limit of {limit:,} bytes", status=413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(f"the body is over the limit of {limit:,} bytes", status=413)
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # Starlette's form parser reads a cached body instead of the (consumed) stream
    return body


def body_type(request: Request) -> str:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in BODY_TYPES:
        raise RequestError(f"the body is {media or 'untyped'!r}; send application/json (text, tabular, time series "
                           "values) or multipart/form-data (file uploads)", status=415)
    return media


def create_app(model: Any, config: ServeConfig | None = None, *, index: Any = None,
               run: str | Path | None = None) -> FastAPI:
    """The app serving ``model`` (a ``Model`` or ``AlignedModel``; ``run`` is its folder, for the ONNX backend)."""
    cfg = config or ServeConfig()
    schema, fields = model.schema, fields_of(model.schema)
    runner = Runner(model, cfg.backend, run, onnx=cfg.onnx, threads=cfg.threads)
    metrics = Metrics()
    executor = ThreadPoolExecutor(1, thread_name_prefix="polymodal-infer", initializer=torch.set_num_threads,
                                  initargs=(cfg.threads,))
    root = Path(tempfile.mkdtemp(prefix="polymodal-serve-"))  # empty: the only folder decoding may read from
    opts = dict(max_batch=cfg.max_batch, max_wait_ms=cfg.max_wait_ms, queue_size=cfg.queue_size,
                timeout_s=cfg.timeout_s)

    def batch_of(answers: Any) -> Any:
        """The batch function of a route: decode every request of the batch together (in the inference thread),
        then ``answers`` (``runner.predict`` / ``runner.embed``) for those that decoded; a request that did not
        gets its own ``RequestError``."""
        def run(items: list[Item]) -> list[Any]:
            decoded, failed = decode_batch(schema, fields, [it.records for it in items], root)
            ok = [it.n for i, it in enumerate(items) if i not in failed]
            done = iter(answers(decoded, ok) if ok else [])
            return [failed[i] if i in failed else next(done) for i in range(len(items))]
        return run

    batchers: dict[str, MicroBatcher] = {}
    if runner.can_predict:
        batchers["/predict"] = MicroBatcher("/predict", batch_of(runner.predict), executor, metrics, **opts)
    if runner.can_embed:
        batchers["/embed"] = MicroBatcher("/embed", batch_of(runner.embed), executor, metrics, **opts)
    if index is not None and "/embed" not in batchers:
        raise PolymodalError("--index needs a run with a shared embedding space (an align run, or fit with align=)")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        for b in batchers.values():
            b.start()
        try:
            yield
        finally:
            for b in batchers.values():
                await b.stop()

    app = FastAPI(title=f"polymodal: {model!r}"[:200], version=__version__, lifespan=lifespan,
                  description="Routes generated from the run's schema: " +
                  ", ".join(f"`{c}` ({f.kind}, modality {f.modality})" for c, f in fields.items()))
    app.state.config, app.state.metrics, app.state.batchers = cfg, metrics, batchers
    routes = {"/predict", "/embed", "/search", "/info", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"}
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=routes)

    async def require_key(request: Request) -> None:  # async: a sync dependency would cost a thread hop
        if cfg.api_key_hashes and not key_matches(_api_key(request), cfg.api_key_hashes):
            raise HTTPException(401, "a valid API key is needed: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                                headers={"WWW-Authenticate": "Bearer"})

    async def records_of(request: Request) -> list[dict[str, Any]]:
        media = body_type(request)
        body = await read_body(request, cfg.max_body_bytes)
        if media == "application/json":
            return json_records(body, fields, cfg.max_records)
        most = cfg.max_records * len(fields)
        form = await request.form(max_files=most + 1, max_fields=most + 2, max_part_size=MAX_FORM_FIELD)
        try:
            return await form_records(form.multi_items(), fields, cfg.max_records, cfg.max_file_bytes)
        finally:
            await form.close()

    def queue_full() -> HTTPException:
        return HTTPException(429, f"the queue is full ({cfg.queue_size} requests waiting); retry shortly",
                             headers={"Retry-After": "1"})

    async def answer(route: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        try:  # decoded in the inference thread, with the rest of its batch: the event loop only parses
            return await batchers[route].submit(Item(records, len(records)))
        except QueueFull:
            raise queue_full() from None
        except asyncio.TimeoutError:
            raise HTTPException(504, f"no answer within the server's timeout of {cfg.timeout_s:g} s") from None
        except NotRunning as e:  # start-up, shutdown
            raise HTTPException(503, str(e), headers={"Retry-After": "1"}) from None

    auth = [Depends(require_key)]
    if "/predict" in batchers:
        @app.post("/predict", dependencies=auth, responses=ERRORS,
                  openapi_extra={"requestBody": request_body(schema, cfg.max_records)},
                  summary="Predictions for one or more records (any modality may be left out)")
        async def predict(request: Request) -> dict[str, Any]:
            return {"predictions": await answer("/predict", await records_of(request))}

    if "/embed" in batchers:
        @app.post("/embed", dependencies=auth, responses=ERRORS,
                  openapi_extra={"requestBody": request_body(schema, cfg.max_records)},
                  summary="Vectors in the shared space: per modality given, and fused")
        async def embed(request: Request) -> dict[str, Any]:
            return {"embeddings": await answer("/embed", await records_of(request))}

    if index is not None:
        search_route = SearchRoute(index, fields, cfg.max_file_bytes)

        @app.post("/search", dependencies=auth, responses=ERRORS,
                  openapi_extra={"requestBody": request_body(schema, 1, search=True)},
                  summary="The indexed rows nearest to a query record (one modality, or several: fused)")
        async def search(request: Request) -> dict[str, Any]:
            media = body_type(request)
            body = await read_body(request, cfg.max_body_bytes)
            form = None if media == "application/json" else await request.form(
                max_files=len(fields) + 1, max_fields=len(fields) + 4, max_part_size=MAX_FORM_FIELD)
            try:
                query = await search_route.parse(body, form)
            finally:
                if form is not None:
                    await form.close()
            vectors = (await answer("/embed", [query.record]))[0]
            return {"results": await asyncio.to_thread(search_route.run, query, vectors)}

    @app.get("/info", dependencies=auth, summary="The model: its fields, task, classes and routes")
    async def info() -> dict[str, Any]:
        return {"model": repr(model), "task": schema.task if runner.can_predict else None,
                "classes": schema.classes if runner.can_predict else None, "backend": runner.backend,
                "fields": {c: {"modality": f.modality, "kind": f.kind} for c, f in fields.items()},
                "routes": sorted(batchers) + (["/search"] if index is not None else [])}

    @app.get("/healthz", summary="The process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="The inference workers run (503 otherwise)")
    async def readyz() -> JSONResponse:
        ready = bool(batchers) and all(b.running for b in batchers.values())
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    @app.get("/metrics", summary="Prometheus metrics (text format)")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, e: RequestError) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=e.status)

    @app.exception_handler(PolymodalError)
    async def polymodal_error(request: Request, e: PolymodalError) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, e: Exception) -> JSONResponse:
        log.error("internal error serving %s %s", request.method, request.url.path, exc_info=e)
        return JSONResponse({"detail": "internal server error (logged)"}, status_code=500)

    weakref.finalize(app, shutil.rmtree, root, True)
    return app
