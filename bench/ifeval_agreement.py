"""Instruction-level agreement of ecd's IFEval checks with the reference implementation.

    python bench/ifeval_agreement.py [--per-prompt K] [TEXTS.jsonl ...]

Needs lm-eval installed next to ecd (``make bench-reference`` builds such an environment). Prints
agreement per instruction type, strict and loose, and every disagreement.
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
from pathlib import Path

from ifeval_common import base_texts, prompts, reference, reference_follow, responses_for

from ecd.evaluation import follow_list


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("texts", nargs="*", type=Path)
    ap.add_argument("--per-prompt", type=int, default=3)
    args = ap.parse_args()
    registry = reference()
    if registry is None:
        raise SystemExit("lm-eval is not installed: run `make bench-reference`")
    rng = random.Random(0)
    texts = base_texts(args.texts)
    total, agree = Counter(), Counter()
    diffs = []
    for p in prompts():
        for response in responses_for(p, texts, args.per_prompt, rng):
            for mode in ("strict", "loose"):
                ours = follow_list(response, p["instruction_id_list"], p["kwargs"], loose=mode == "loose")
                theirs = reference_follow(registry, p, response, loose=mode == "loose")
                for tid, a, b in zip(p["instruction_id_list"], ours, theirs):
                    total[mode, tid] += 1
                    agree[mode, tid] += a == b
                    if a != b:
                        diffs.append((mode, p["key"], tid, a, b, response[:160].replace("\n", "\\n")))
    for mode in ("strict", "loose"):
        n = sum(v for (m, _), v in total.items() if m == mode)
        k = sum(v for (m, _), v in agree.items() if m == mode)
        print(f"{mode}: {k}/{n} instruction verdicts agree ({100 * k / n:.2f} %)")
    print("\nper type (strict):")
    for (mode, tid), n in sorted(total.items()):
        if mode == "strict":
            print(f"  {tid:50s} {agree[mode, tid]}/{n}")
    print(f"\n{len(diffs)} disagreements")
    for d in diffs[:50]:
        print("  ", d)


if __name__ == "__main__":
    main()
