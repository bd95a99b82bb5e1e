"""The openai backend at a hosted API's limits and through its Batch API, on the tests' scripted servers.

    python bench/hosted_api.py

- the server of tests/test_ratelimit.py, which allows 4 requests in any rolling second and answers
  429 with ``Retry-After`` beyond that: 64 requests with a cap at 0.9 of its rate, then with no cap;
  prints the rate achieved against the cap, and the refused and failed calls;
- the server of tests/test_batch_api.py, with the file and batch endpoints: 2,000 requests through
  the batch mode, then the same with a first batch that expires after answering 1,500; prints the
  uploads, the batches, the right answers and the seconds.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]


def rate_limit(cap_fraction: float | None, n: int = 64) -> None:
    import test_ratelimit
    from conftest import LoopbackChat

    from ecd.backends import OpenAIBackend, Request

    handler = type("Limited", (test_ratelimit._Limited,), {"lock": threading.Lock(), "refused": 0, "answered": []})
    server, url = LoopbackChat.serve(handler)
    rate = test_ratelimit.RATE
    cap = {"requests_per_minute": int(cap_fraction * rate * 60)} if cap_fraction else {}
    backend = OpenAIBackend(_params(base_url=url, concurrency=8, max_retries=20, timeout=10, **cap))
    requests = [Request(messages=[{"role": "user", "content": f"q{i}"}]) for i in range(n)]
    _, stats, took = _run(backend, requests, server, f"rate{cap_fraction}")
    achieved = (len(handler.answered) - 1) / (handler.answered[-1] - handler.answered[0])
    against = (f"a cap of {cap_fraction * rate:.2f}/s: {achieved / (cap_fraction * rate):.3f} of it" if cap_fraction
               else f"no cap, the server's {rate}/s")
    print(f"(rate) {len(handler.answered)} answered in {took:.1f} s, {handler.refused} refused with Retry-After, "
          f"{stats.failed} failed; {achieved:.3f} requests/s against {against}")


def batch_mode(n: int, expire_first: list[int]) -> None:
    import test_batch_api
    from conftest import LoopbackChat

    from ecd.backends import OpenAIBackend, Request

    handler = type("Batches", (test_batch_api._BatchServer,), {
        "lock": threading.Lock(), "files": {}, "batches": {}, "uploads": [], "expire_first": expire_first,
        "hold": threading.Event()})
    handler.hold.set()
    server, url = LoopbackChat.serve(handler)
    backend = OpenAIBackend(_params(base_url=url, batch_api=True, batch_poll_seconds=0.5, max_retries=0))
    requests = [Request(messages=[{"role": "user", "content": f"q{i}"}], seed=i) for i in range(n)]
    done, stats, took = _run(backend, requests, server, f"batch{expire_first}")
    right = sum(c.text == f"ok q{i}" for i, c in enumerate(done))
    print(f"(batch) {n} requests, first batch expiring after {expire_first or 'none'}: uploads {handler.uploads}, "
          f"{len(handler.batches)} batches, {right} right answers, {stats.failed} failed, {took:.1f} s")


def _run(backend, requests, server, name: str) -> tuple:
    """The requests through the call cache and the backend, timed; the server shut down after."""
    from ecd.backends import generate_cached
    from ecd.cache import CallCache

    try:
        t0 = time.perf_counter()
        done, stats = generate_cached(backend, requests, template_version="t", description=name,
                                      cache=CallCache(Path(os.environ["ECD_CACHE_DIR"]) / f"{name}.sqlite"))
        return done, stats, time.perf_counter() - t0
    finally:
        server.shutdown()


def _params(**kw):
    from ecd.params import ModelParams

    return ModelParams(backend="openai", model="m", temperature=0.0, **kw)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # the call cache and the batch state (a sibling of the cache) in a folder of their own
        os.environ["ECD_CACHE_DIR"] = str(Path(tmp) / "cache")
        rate_limit(0.9)
        rate_limit(None)
        batch_mode(2000, [])
        batch_mode(2000, [1500])


if __name__ == "__main__":
    main()
