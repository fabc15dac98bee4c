"""Dynamic micro-batching: requests wait in a bounded queue and run through the net together.

A ``MicroBatcher`` belongs to one route (``/predict`` or ``/embed``). ``submit(item)`` queues a request's records,
as parsed and checked for shape (not yet decoded), and awaits its result. The worker takes the oldest request, then
keeps adding waiting requests until the batch holds ``max_batch`` records or ``max_wait_ms`` have passed since that
oldest request arrived, and hands the batch to ``run_batch`` in the single inference thread, which decodes the
whole batch at once and runs it through the net (so torch runs one batch at a time, with its set number of
threads, and the event loop only parses HTTP). ``run_batch`` answers each request with its result or with an
exception of its own (a request whose records do not decode), so one bad request does not fail its batch.
Requests missing different modalities share a batch: each record carries its own ``present`` flags.

A request that alone holds more than ``max_batch`` records runs as a batch of its own. The queue holds at most
``queue_size`` requests (counting those already gathered for the next batch): a request that finds it full is
refused at once (``QueueFull`` -> 429 with ``Retry-After``) instead of growing memory and latency without limit.
A request that waits longer than ``timeout_s`` in all gets ``asyncio.TimeoutError`` (-> 504); if it was still
queued, it is dropped from the queue and never computed.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from polymodal.serve.metrics import Metrics


class QueueFull(Exception):
    """The route's queue holds ``queue_size`` requests already."""


class NotRunning(Exception):
    """The worker is not running (before start-up, during shutdown)."""


@dataclass
class Item:
    """One request's ``n`` records (``{column: value}`` each, checked for shape by ``serve/inputs.py``)."""

    records: list[dict[str, Any]]
    n: int
    future: asyncio.Future = field(default=None)  # type: ignore[assignment]
    arrived: float = 0.0


class MicroBatcher:
    """A bounded queue of requests and the worker coroutine that batches them (see the module docstring)."""

    def __init__(self, route: str, run_batch: Callable[[list[Item]], list[Any]], executor: Executor,
                 metrics: Metrics, *, max_batch: int, max_wait_ms: float, queue_size: int, timeout_s: float) -> None:
        self.route, self.run_batch, self.executor, self.metrics = route, run_batch, executor, metrics
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1e3
        self.queue_size, self.timeout = queue_size, timeout_s
        self.pending: deque[Item] = deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    # ------------------------------------------------------------------ lifecycle (the app's lifespan)
    def start(self) -> None:
        """Start the worker on the running event loop."""
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._worker(), name=f"batcher{self.route}")

    async def stop(self) -> None:
        """Stop the worker; requests still queued fail with ``NotRunning`` (-> 503)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        while self.pending:
            item = self.pending.popleft()
            if not item.future.done():
                item.future.set_exception(NotRunning("the server is shutting down"))
        self._gauge()

    @property
    def full(self) -> bool:
        """Whether a request submitted now would be refused (``QueueFull``)."""
        return len(self.pending) >= self.queue_size

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # ------------------------------------------------------------------ requests
    async def submit(self, item: Item) -> Any:
        """Queue ``item`` and await its result; ``QueueFull`` when the queue is full, ``asyncio.TimeoutError`` after
        ``timeout_s``."""
        if not self.running:
            raise NotRunning("the inference worker is not running")
        if self.full:
            raise QueueFull(self.queue_size)
        item.future = asyncio.get_running_loop().create_future()
        item.arrived = time.monotonic()
        self.pending.append(item)
        self._gauge()
        assert self._wake is not None
        self._wake.set()
        try:
            return await asyncio.wait_for(asyncio.shield(item.future), self.timeout)
        except asyncio.TimeoutError:
            if item in self.pending:  # not taken yet: it will never be computed
                self.pending.remove(item)
                self._gauge()
            item.future.cancel()
            raise

    def _gauge(self) -> None:
        self.metrics.queue_depth.labels(self.route).set(len(self.pending))

    # ------------------------------------------------------------------ the worker
    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wake is not None
        while True:
            while not self.pending:
                self._wake.clear()
                await self._wake.wait()
            deadline = self.pending[0].arrived + self.max_wait
            while sum(i.n for i in self.pending) < self.max_batch and (left := deadline - time.monotonic()) > 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), left)
                except asyncio.TimeoutError:
                    break
            batch = self._take()
            if not batch:
                continue
            self.metrics.batch_size.labels(self.route).observe(sum(i.n for i in batch))
            t0 = time.perf_counter()
            try:
                results = await loop.run_in_executor(self.executor, self.run_batch, batch)
            except Exception as e:  # noqa: BLE001  (handed to every request of the batch; the app logs it)
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(e)
                continue
            finally:
                self.metrics.inference.labels(self.route).observe(time.perf_counter() - t0)
            for item, result in zip(batch, results):
                if item.future.done():
                    continue
                if isinstance(result, Exception):  # this request's own error (its records did not decode)
                    item.future.set_exception(result)
                else:
                    item.future.set_result(result)

    def _take(self) -> list[Item]:
        """The oldest waiting requests up to ``max_batch`` records (at least one request); timed-out ones dropped."""
        batch: list[Item] = []
        total = 0
        while self.pending:
            item = self.pending[0]
            if item.future.done():  # timed out while waiting
                self.pending.popleft()
                continue
            if batch and total + item.n > self.max_batch:
                break
            batch.append(self.pending.popleft())
            total += item.n
        self._gauge()
        return batch
