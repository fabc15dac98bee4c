"""The one experiment runner: jobs in spawned worker processes (or in this process with ``workers <= 1``).

Used by ``compare``, the ``demo`` and the benchmarks. Each worker should set its own torch thread count (two
1-thread workers share 2 cores); results come back in completion order through ``on_done`` and in submission
order as the return value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

J = TypeVar("J")
R = TypeVar("R")


def run_parallel(fn: Callable[[J], R], jobs: Sequence[J], workers: int = 2,
                 on_done: Callable[[R], None] | None = None) -> list[R]:
    """``[fn(job) for job in jobs]``, ``workers`` at a time in spawned processes (``fn`` must be importable)."""
    if workers <= 1:
        out: list[Any] = []
        for job in jobs:
            r = fn(job)
            out.append(r)
            if on_done:
                on_done(r)
        return out
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    results: dict[int, Any] = {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(fn, job): i for i, job in enumerate(jobs)}
        for fut in as_completed(futures):
            r = fut.result()
            results[futures[fut]] = r
            if on_done:
                on_done(r)
    return [results[i] for i in range(len(jobs))]
