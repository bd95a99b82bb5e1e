"""The machine's cores for the data half's CPU work: chunks of seeds mapped over worker processes,
results in the order of the chunks, so that a stage writes the same bytes with one process or many.

Verification and evolution planning are pure functions of a chunk (each chain draws from its own
seeded generator), which is what makes the order the only thing to keep. Workers are spawned, not
forked: a forked copy of a process that has loaded a model or opened the call cache's database is
not safe. A stage keeps one pool for all its maps (a worker's imports and the round-file indexes it
builds, ``ecd.rounds.worker_rounds``, serve every chunk it is sent), and at most twice as many
chunks as workers are in flight, so memory stays a few chunks.
"""

from __future__ import annotations

import atexit
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

from ecd.errors import EcdError

T = TypeVar("T")
R = TypeVar("R")

#: this process's pools of worker processes, by size, kept until it exits
_POOLS: dict[int, ProcessPoolExecutor] = {}


def worker_count() -> int:
    """``ECD_WORKERS`` or the cores this process may run on; 1 runs everything in this process."""
    value = os.environ.get("ECD_WORKERS")
    if value is None:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if not value.isdigit() or int(value) < 1:
        raise EcdError(f"ECD_WORKERS={value!r}: expected a whole number of worker processes, 1 or more")
    return int(value)


def _die_with(parent: int) -> None:
    """A worker's first act: a thread that ends it once the stage's process is gone, even by
    ``kill -9`` (each worker holds both ends of the pool's queue, so it would wait on it for ever)."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, name="ecd-parent-watch", daemon=True).start()


def _pool(n: int) -> ProcessPoolExecutor:
    if n not in _POOLS:
        import multiprocessing

        _POOLS[n] = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"), initializer=_die_with,
                                        initargs=(os.getpid(),))
        if len(_POOLS) == 1:
            atexit.register(shutdown)
    return _POOLS[n]


def shutdown() -> None:
    """Stop this process's worker processes (at exit, or sooner to free their memory)."""
    while _POOLS:
        _POOLS.popitem()[1].shutdown(cancel_futures=True)


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int | None = None) -> Iterator[R]:
    """``map(fn, items)`` over ``workers`` processes (:func:`worker_count` by default), results in
    the items' order. ``fn`` must be a module-level function; an error in a worker is raised here."""
    from concurrent.futures.process import BrokenProcessPool

    n = worker_count() if workers is None else workers
    if n <= 1:
        yield from map(fn, items)
        return
    pool = _pool(n)
    pending: deque[Future[Any]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * n:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    except BrokenProcessPool:
        _POOLS.pop(n, None)  # a worker died (killed, out of memory): the next map starts a new pool
        raise
    finally:
        for future in pending:  # an error, or a consumer that stopped early: drop what it will not read
            future.cancel()
