"""The openai backend against the ideal: every slot busy behind a server with long-tailed answer times.

    python bench/concurrency.py [--per-slot 100] [--concurrency 32 256]

A loopback OpenAI-compatible server (its own process, one asyncio event loop, keep-alive) answers each
request after a latency fixed by the request's text: most answers take 0.2–1 s, one in seven takes
3–8 s, as an LLM server's do. A real server's CPU is not the client's; this one shares the 2 cores,
so it is kept as light as a server can be (a waiting answer is a timer, not a thread). The
ideal time for a run is the sum of the latencies over the concurrency (every slot always busy); no
schedule can beat it, and the last long answers keep even a perfect one about one long answer (5-6 s)
behind it, whatever the run's length. At 40 answers a slot that tail alone holds any on-line schedule
to 0.90 of the ideal at concurrency 256, so runs are 100 answers a slot long (a real run is thousands).
Two ways of sending the same requests are timed side by side at each concurrency:

- ``chunked``: the old way, ``generate`` on chunks of ``concurrency × 4`` requests, each chunk waiting
  for its slowest answer before the next starts;
- ``window``: ``generate_cached`` as the stages call it: one sliding window of ``concurrency``
  requests, each result committed to the call cache as it finishes.

Prints each run's seconds, its efficiency (ideal / measured), the calls that reached the cache, the
client's CPU time per request (one Python event loop: at 256 slots it must send about 200 a second), and
the time of a window with no overhead at all sending in the same order (simulated from the same
latencies): the best an on-line schedule can do, since no client knows an answer's time in advance.
"""

from __future__ import annotations

import argparse
import heapq
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SERVER = r'''
import asyncio, json, random

def latency(text):
    rng = random.Random(text.rsplit(" ", 1)[-1])
    return rng.uniform(3.0, 8.0) if rng.random() < 1 / 7 else rng.uniform(0.2, 1.0)

async def serve(reader, writer):
    # HTTP/1.1 with keep-alive on one event loop: a waiting answer costs a timer, not a thread
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            length = next((int(l.split(":", 1)[1]) for l in lines if l.lower().startswith("content-length:")), 0)
            body = await reader.readexactly(length) if length else b""
            if lines[0].startswith("GET"):
                out = b"ok"
            else:
                req = json.loads(body)
                text = req["messages"][-1]["content"]
                await asyncio.sleep(latency(text))
                out = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": req["model"],
                    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok " + text}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(out) + out)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()

async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()

asyncio.run(main())
'''


def latency(text: str) -> float:
    """The server's latency for a request (the same function, to compute the ideal): fixed by the
    request's number, so both ways of sending meet the same latencies."""
    rng = random.Random(text.rsplit(" ", 1)[-1])
    return rng.uniform(3.0, 8.0) if rng.random() < 1 / 7 else rng.uniform(0.2, 1.0)


def best_window(latencies: list[float], concurrency: int) -> float:
    """The time of a sliding window with no overhead at all, sending in this order: each request starts
    when the earliest slot frees. Latencies are unknown until answered, so no on-line schedule does
    better on average; the long answers that start last set how far it stays behind the ideal."""
    slots = [0.0] * concurrency
    for latency_s in latencies:
        heapq.heappush(slots, heapq.heappop(slots) + latency_s)
    return max(slots)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-slot", type=int, default=100, help="requests per run: this many × the concurrency")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[32, 256])
    args = ap.parse_args()

    from ecd.backends import OpenAIBackend, Request, answer_all, generate_cached
    from ecd.cache import CallCache
    from ecd.params import ModelParams

    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{server.stdout.readline().strip()}/v1"
        urllib.request.urlopen(url.replace("/v1", "/health"), timeout=10).read()
        for conc in args.concurrency:
            n = args.per_slot * conc
            for way in ("chunked", "window"):
                # fresh texts per run, so that no run is answered from another's cache
                texts = [f"{way} {conc} request {i}" for i in range(n)]
                ideal = sum(latency(t) for t in texts) / conc
                # the order generate_cached sends in: longest prompt first (a stable sort)
                sent = sorted(texts, key=lambda t: -len(t))
                best = best_window([latency(t) for t in sent], conc)
                backend = OpenAIBackend(ModelParams(backend="openai", model="bench", base_url=url,
                                                    concurrency=conc, max_retries=0, timeout=60))
                requests = [Request(messages=[{"role": "user", "content": t}]) for t in texts]
                with tempfile.TemporaryDirectory() as tmp:
                    cache = CallCache(Path(tmp) / "calls.sqlite")
                    t0, cpu0 = time.perf_counter(), time.process_time()
                    if way == "chunked":
                        step = conc * 4
                        for start in range(0, n, step):
                            answer_all(backend, requests[start:start + step])
                        cached = 0
                    else:
                        generate_cached(backend, requests, template_version="bench", description=f"window {conc}",
                                        cache=cache)
                        cached = cache.count()
                    took, cpu = time.perf_counter() - t0, time.process_time() - cpu0
                    cache.close()
                print(f"({way}) concurrency {conc}, {n} requests: {took:.1f} s against ideal {ideal:.1f} s, "
                      f"efficiency {ideal / took:.2f}, {cached} calls in the cache; a window with no overhead: "
                      f"{best:.1f} s (efficiency {ideal / best:.3f}), reached {best / took:.2f} of it; "
                      f"the client's CPU {1000 * cpu / n:.1f} ms a request")
    finally:
        server.kill()


if __name__ == "__main__":
    main()
