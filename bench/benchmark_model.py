"""Answer IFEval or IFBench with a local model through ecd's evaluation path, then score it.

    python bench/benchmark_model.py MODEL_DIR --set ifbench [--max-new-tokens 256] [--batch-size 64] [--out DIR]

The answers go through the same transformers backend and call cache as the ``evaluate`` stage
(greedy), so a later pipeline run reuses them; the responses file and the two result files are
written to ``--out`` in the benchmark's own formats, and the summary is printed with the wall time
of the answering and the scoring measured apart.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ecd.evaluation import BENCHMARKS, answer, score_responses  # noqa: E402
from ecd.params import EvaluateParams  # noqa: E402
from ecd.records import write_jsonl  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("--set", choices=sorted(BENCHMARKS), default="ifbench")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", type=Path, default=Path("bench-out"))
    args = ap.parse_args()
    from ecd.evaluation import benchmark_prompts

    prompts = benchmark_prompts(args.set)
    params = EvaluateParams(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    start = time.perf_counter()
    responses = answer(args.model, prompts, params, f"{args.model.name} {args.set}")
    answered = time.perf_counter() - start
    write_jsonl(args.out / "responses.jsonl", [{"prompt": p["prompt"], "response": r} for p, r in zip(prompts, responses)],
                sort_keys=False)
    start = time.perf_counter()
    summary = score_responses(BENCHMARKS[args.set].input, args.out / "responses.jsonl", args.out, BENCHMARKS[args.set].sha256)
    scored = time.perf_counter() - start
    print(json.dumps({"model": str(args.model), "set": args.set, "prompts": len(prompts),
                      "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size,
                      "answer_seconds": round(answered, 1), "score_seconds": round(scored, 2), **summary}, indent=2))


if __name__ == "__main__":
    main()
