"""The Ray backend's throughput beside the single-process transformers backend, same requests.

    python bench/ray_cluster.py [--workers 2] [--requests 175]

Both answer the seed set's instructions with the default tiny student (sampling, a seed per request,
64 new tokens) through ``generate_cached`` on an empty cache; the Ray run starts a local cluster
with one CPU per worker and counts the cluster's start and the model loads in its time, as a stage
would. Prints seconds, requests/s and tokens/s of each, their ratio, and how many answers are
byte-identical. On this 2-core machine the two workers share the cores the single process uses
with two threads, so the ratio shows the overhead of the cluster, not a speed-up; on a cluster the
pool scales with its nodes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from bench.backends import tiny_model  # noqa: E402
from ecd.backends import Request, generate_cached, make_backend  # noqa: E402
from ecd.cache import CallCache  # noqa: E402
from ecd.params import ModelParams, SeedParams  # noqa: E402
from ecd.seeds import load_seeds  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--requests", type=int, default=175)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ecd-bench-ray-"))
    try:
        model = tiny_model(work)
        seeds = load_seeds(SeedParams(source=str(ROOT / "data/self-instruct/seed_tasks.jsonl")))[: args.requests]
        requests = [Request(messages=[{"role": "user", "content": s["text"]}], seed=1000 + i) for i, s in enumerate(seeds)]
        common = {"model": str(model), "max_new_tokens": 64, "temperature": 0.7, "batch_size": 16}
        runs = {}
        for label, params in (("one process", ModelParams(backend="transformers", **common)),
                              (f"ray, {args.workers} workers", ModelParams(backend="ray", num_workers=args.workers,
                                                                           cpus_per_worker=1, **common))):
            backend = make_backend(params)
            start = time.perf_counter()
            done, stats = generate_cached(backend, requests, template_version="bench", description=label,
                                          cache=CallCache(work / f"{label}.sqlite"))
            runs[label] = (time.perf_counter() - start, done, stats)
        (a_label, (a_s, a_done, a_stats)), (b_label, (b_s, b_done, b_stats)) = runs.items()
        for label, (secs, _done, stats) in runs.items():
            print(f"({label}) {len(requests)} requests in {secs:.1f} s: {len(requests) / secs:.2f} req/s, "
                  f"{stats.completion_tokens / secs:.0f} tok/s")
        same = sum(x.text == y.text for x, y in zip(a_done, b_done))
        print(f"(ratio) ray / one process throughput: {a_s / b_s:.2f}; identical answers {same}/{len(requests)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
