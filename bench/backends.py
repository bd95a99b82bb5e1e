"""Backend and cache benchmarks, each printing what it measured side by side in one run.

    python bench/backends.py

(a) the transformers backend's throughput over calling ``model.generate`` directly (same model,
    prompts, batch size, greedy, same number of new tokens);
(b) a warm-cache rerun of the sample stage's work over a cold one;
(c) the openai backend against a real ``transformers serve`` on 127.0.0.1 at concurrency 1, 4 and 16.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ecd.backends import OpenAIBackend, Request, TransformersBackend, generate_cached  # noqa: E402
from ecd.cache import CallCache  # noqa: E402
from ecd.params import ModelParams, SeedParams, StudentParams  # noqa: E402
from ecd.sampling import sample_responses  # noqa: E402
from ecd.seeds import load_seeds  # noqa: E402
from ecd.student import build_student  # noqa: E402

BATCH, NEW_TOKENS = 16, 32


def tiny_model(work: Path) -> Path:
    seeds = load_seeds(SeedParams(source=str(ROOT / "data/self-instruct/seed_tasks.jsonl")))
    out = work / "model"
    build_student([s["text"] for s in seeds] + [s["reference"] for s in seeds], StudentParams(), out)
    return out


def bench_transformers(model: Path, prompts: list[str], work: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model, padding_side="left")
    lm = AutoModelForCausalLM.from_pretrained(model).eval()

    def direct() -> None:
        for i in range(0, len(prompts), BATCH):
            texts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
                     for p in prompts[i : i + BATCH]]
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.inference_mode():
                lm.generate(**enc, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False,
                            pad_token_id=tok.pad_token_id)

    backend = TransformersBackend(ModelParams(backend="transformers", model=str(model), temperature=0.0,
                                              max_new_tokens=NEW_TOKENS, batch_size=BATCH))
    backend._load()
    backend._model.generation_config.min_new_tokens = NEW_TOKENS  # the same work as the direct call
    requests = [Request(messages=[{"role": "user", "content": p}]) for p in prompts]

    def ours(k: int) -> None:
        generate_cached(backend, requests, template_version="bench", description="ecd",
                        cache=CallCache(work / f"a{k}.sqlite"))  # a cold cache each time: every call computed

    direct()
    t_direct = min(timed(direct) for _ in range(3))
    t_ours = min(timed(lambda k=k: ours(k)) for k in range(3))
    tokens = len(prompts) * NEW_TOKENS
    print(f"(a) transformers backend: {tokens / t_ours:,.0f} tok/s; model.generate directly: {tokens / t_direct:,.0f} tok/s; "
          f"ratio {t_direct / t_ours:.2f} ({len(prompts)} prompts, batch {BATCH}, {NEW_TOKENS} new tokens, greedy)")


def bench_cache(model: Path, work: Path) -> None:
    seeds = load_seeds(SeedParams(source=str(ROOT / "data/self-instruct/seed_tasks.jsonl")))
    backend = TransformersBackend(ModelParams(backend="transformers", model=str(model), max_new_tokens=64, batch_size=BATCH))
    os.environ["ECD_CACHE_DIR"] = str(work / "stage-cache")
    cold = timed(lambda: sample_responses(seeds, backend, 1, 0, "r0"))
    warm = timed(lambda: sample_responses(seeds, backend, 1, 0, "r0"))
    print(f"(b) sample stage's work on {len(seeds)} seeds: cold cache {cold:.2f} s, warm cache {warm:.3f} s: "
          f"{cold / warm:.0f}x faster warm")


def bench_openai(model: Path, prompts: list[str], work: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home = work / "hf-home"
    (home / "hub").mkdir(parents=True)
    env = {**os.environ, "HF_HOME": str(home)}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "transformers"), "serve", str(model), "--host",
                             "127.0.0.1", "--port", str(port), "--device", "cpu"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.3)
        requests = [Request(messages=[{"role": "user", "content": p}], seed=i) for i, p in enumerate(prompts)]
        rates = {}
        for concurrency in (1, 4, 16):
            backend = OpenAIBackend(ModelParams(backend="openai", model=str(model), base_url=f"http://127.0.0.1:{port}/v1",
                                                concurrency=concurrency, max_new_tokens=NEW_TOKENS, temperature=0.0))
            t = timed(lambda c=concurrency: generate_cached(backend, requests, template_version="bench",
                                                           description=f"c{c}", cache=CallCache(work / f"o{c}.sqlite")))
            rates[concurrency] = len(requests) / t
        print("(c) openai backend against transformers serve: " + ", ".join(
            f"concurrency {c}: {r:.1f} req/s ({r / rates[1]:.2f}x)" for c, r in rates.items()))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="ecd-bench-"))
    try:
        model = tiny_model(work)
        prompts = [s["text"][:300] for s in load_seeds(SeedParams(source=str(ROOT / "data/self-instruct/seed_tasks.jsonl")))][:64]
        bench_transformers(model, prompts, work)
        bench_cache(model, work)
        bench_openai(model, prompts[:48], work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
