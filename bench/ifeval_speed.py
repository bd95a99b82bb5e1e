"""Time to score all 541 IFEval prompts (strict and loose) on one core, ecd against the reference.

    python bench/ifeval_speed.py

Prints the seconds each implementation took (best of 3) and their ratio, measured in one run.
"""

from __future__ import annotations

import os
import random
import time

from ifeval_common import base_texts, prompts, reference, reference_follow, responses_for

from ecd.constraints.text import detect_language
from ecd.evaluation import score


def best_of(n: int, fn) -> float:
    """Best of ``n`` cold runs: the language-detection cache is emptied before each."""
    times = []
    for _ in range(n):
        detect_language.cache_clear()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    rng = random.Random(0)
    texts = base_texts([])
    items = []
    for p in prompts():
        response = responses_for(p, texts, 1, rng)[-1]
        items.append({**p, "response": response})
    score(items)  # warm-up: imports, langdetect profiles, Punkt
    ours = best_of(3, lambda: score(items))
    print(f"ecd: scored {len(items)} prompts ({sum(len(i['instruction_id_list']) for i in items)} instructions), "
          f"strict and loose, in {ours:.3f} s on one core")
    registry = reference()
    if registry is None:
        print("reference (lm-eval) not installed: run `make bench-reference` for the side-by-side time")
        return

    def run_reference() -> None:
        for it in items:
            reference_follow(registry, it, it["response"], loose=False)
            reference_follow(registry, it, it["response"], loose=True)

    run_reference()
    theirs = best_of(3, run_reference)
    print(f"reference (lm-eval's IFEval port): {theirs:.3f} s; ecd / reference = {ours / theirs:.2f}")


if __name__ == "__main__":
    main()
