"""HTTP serving of a trained run: FastAPI app, dynamic micro-batching, Prometheus metrics, API keys.

    polymodal serve runs/m1 --port 8000 [--index idx/] [--api-key-file key.txt] [--max-batch 64] [--max-wait-ms 5]

``config.py`` (limits, keys) -> ``inputs.py`` (bodies -> records) -> ``decoding.py`` (records -> arrays, through the
run's own processors) -> ``batching.py`` (the queue and its worker) -> ``infer.py`` (one batch through the net) ->
``app.py`` (routes, status codes) -> ``server.py`` (run folder -> app -> uvicorn). See ``docs/serving.md``.
"""
