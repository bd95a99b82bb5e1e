"""The machine's cores for the data half's CPU work: chunks of seeds mapped over worker processes,
results in the order of the chunks, so that a stage writes the same bytes with one process or many.

Verification and evolution planning are pure functions of a chunk (each chain draws from its own
seeded generator), which is what makes the order the only thing to keep. Workers are spawned, not
forked: a forked copy of a process that has loaded a model or opened the call cache's database is
not safe. At most twice as many chunks as workers are in flight, so memory stays a few chunks.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from ecd.errors import EcdError

T = TypeVar("T")
R = TypeVar("R")


def worker_count() -> int:
    """``ECD_WORKERS`` or the cores this process may run on; 1 runs everything in this process."""
    value = os.environ.get("ECD_WORKERS")
    if value is None:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if not value.isdigit() or int(value) < 1:
        raise EcdError(f"ECD_WORKERS={value!r}: expected a whole number of worker processes, 1 or more")
    return int(value)


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int | None = None) -> Iterator[R]:
    """``map(fn, items)`` over ``workers`` processes (:func:`worker_count` by default), results in
    the items' order. ``fn`` must be a module-level function; an error in a worker is raised here."""
    n = worker_count() if workers is None else workers
    if n <= 1:
        yield from map(fn, items)
        return
    import multiprocessing
    from concurrent.futures import Future, ProcessPoolExecutor

    with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending: deque[Future[Any]] = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * n:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
