"""The openai backend against the ideal: every slot busy behind a server with long-tailed answer times.

    python bench/concurrency.py [--requests 384] [--concurrency 32 256]

A loopback OpenAI-compatible server (its own process) answers each request after a latency fixed by
the request's text: most answers take 0.2–1 s, one in seven takes 3–8 s, as an LLM server's do. The
ideal time for a run is the sum of the latencies over the concurrency (every slot always busy); no schedule can beat it, and the last
long answers keep even a perfect one a few seconds behind it, so runs are 40 answers a slot long. Two
ways of sending the same requests are timed side by side at each concurrency:

- ``chunked``: the old way, ``generate`` on chunks of ``concurrency × 4`` requests, each chunk waiting
  for its slowest answer before the next starts;
- ``window``: ``generate_cached`` as the stages call it: one sliding window of ``concurrency``
  requests, each result committed to the call cache as it finishes.

Prints each run's seconds, its efficiency (ideal / measured) and the calls that reached the cache.
"""

from __future__ import annotations

import argparse
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
import json, random, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

def latency(text):
    rng = random.Random(text.rsplit(" ", 1)[-1])
    return rng.uniform(3.0, 8.0) if rng.random() < 1 / 7 else rng.uniform(0.2, 1.0)

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = body["messages"][-1]["content"]
        time.sleep(latency(text))
        out = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok " + text}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out))); self.end_headers(); self.wfile.write(out)
    def log_message(self, *a): pass

class S(ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = True

s = S(("127.0.0.1", 0), H)
print(s.server_port, flush=True)
s.serve_forever()
'''


def latency(text: str) -> float:
    """The server's latency for a request (the same function, to compute the ideal): fixed by the
    request's number, so both ways of sending meet the same latencies."""
    rng = random.Random(text.rsplit(" ", 1)[-1])
    return rng.uniform(3.0, 8.0) if rng.random() < 1 / 7 else rng.uniform(0.2, 1.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=0, help="requests per run (default: 40 × concurrency)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[32, 256])
    args = ap.parse_args()

    from ecd.backends import OpenAIBackend, Request, generate_cached
    from ecd.cache import CallCache
    from ecd.params import ModelParams

    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{server.stdout.readline().strip()}/v1"
        urllib.request.urlopen(url.replace("/v1", "/health"), timeout=10).read()
        for conc in args.concurrency:
            n = args.requests or 40 * conc
            for way in ("chunked", "window"):
                # fresh texts per run, so that no run is answered from another's cache
                texts = [f"{way} {conc} request {i}" for i in range(n)]
                ideal = sum(latency(t) for t in texts) / conc
                backend = OpenAIBackend(ModelParams(backend="openai", model="bench", base_url=url,
                                                    concurrency=conc, max_retries=0, timeout=60))
                requests = [Request(messages=[{"role": "user", "content": t}]) for t in texts]
                with tempfile.TemporaryDirectory() as tmp:
                    cache = CallCache(Path(tmp) / "calls.sqlite")
                    t0 = time.perf_counter()
                    if way == "chunked":
                        step = conc * 4
                        for start in range(0, n, step):
                            backend.generate(requests[start:start + step])
                        cached = 0
                    else:
                        generate_cached(backend, requests, template_version="bench", description=f"window {conc}",
                                        cache=cache)
                        cached = cache.count()
                    took = time.perf_counter() - t0
                    cache.close()
                print(f"({way}) concurrency {conc}, {n} requests: {took:.1f} s against ideal {ideal:.1f} s, "
                      f"efficiency {ideal / took:.2f}, {cached} calls in the cache")
    finally:
        server.kill()


if __name__ == "__main__":
    main()
