"""Prometheus metrics of one app, in a registry of its own (several apps in one process do not share counters).

``polymodal_requests_total{route, status}``, ``polymodal_request_seconds{route}`` (latency histogram),
``polymodal_batch_size{route}`` (records per inference batch), ``polymodal_queue_depth{route}`` (requests waiting
for a batch) and ``polymodal_inference_seconds{route}`` (one batch decoded and run through the net).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
OTHER_ROUTE = "other"  # the label of paths no route serves: a fuzzer's random paths must not add label values


class Metrics:
    """The app's collectors; ``render()`` is the ``/metrics`` body."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("polymodal_requests_total", "HTTP requests by route and status code",
                                ["route", "status"], registry=r)
        self.latency = Histogram("polymodal_request_seconds", "HTTP request latency (seconds), by route", ["route"],
                                 registry=r)
        self.batch_size = Histogram("polymodal_batch_size", "Records per inference batch", ["route"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.queue_depth = Gauge("polymodal_queue_depth", "Requests waiting for an inference batch", ["route"],
                                 registry=r)
        self.inference = Histogram("polymodal_inference_seconds",
                                   "Time of one batch decoded and run through the net (seconds)", ["route"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI middleware: counts every HTTP response by route and status and times it (also 401 / 413 / 429,
    which never reach a route handler's own code)."""

    def __init__(self, app, metrics: Metrics, routes: Iterable[str]) -> None:
        self.app, self.metrics, self.routes = app, metrics, frozenset(routes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = scope.get("path", "")
        route = route if route in self.routes else OTHER_ROUTE
        status = {"code": 500}  # what a crash before the response start is counted as
        t0 = time.perf_counter()

        async def send_status(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.requests.labels(route, str(status["code"])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - t0)
