"""How stable the evaluation's interval bounds are under the bootstrap's own randomness, and what
they cost: the default run's per-prompt verdicts (``data/eval/<student>/<set>.jsonl``) resampled
under several bootstrap seeds at a number of resamples (the evaluation's default: 25,000).

    python bench/bootstrap_stability.py [--sets ifeval heldout ifbench] [--seeds 10] [--resamples 25000]

Prints, per set, over every bound (every student's four metrics and every paired difference): the
largest standard deviation of a bound across the seeds (its Monte Carlo error) and the largest
distance of one from its mean, and the seconds one set's evidence takes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ecd import layout  # noqa: E402
from ecd.uncertainty import Verdicts, evidence  # noqa: E402


def is_group_bound(key: str) -> bool:
    """``dpo.inst_strict_format_lo``: a constraint group's bound, not one of the four metrics' or a difference's."""
    metric = key.split(".", 1)[1].rsplit("_", 1)[0]
    return metric.startswith("inst_strict_")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", nargs="+", default=["ifeval", "heldout", "ifbench"])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--resamples", type=int, default=25_000)
    args = ap.parse_args()
    for set_name in args.sets:
        paths = {s: layout.EVAL / s / f"{set_name}.jsonl" for s in layout.STUDENTS}
        if not all(p.exists() for p in paths.values()):
            print(f"({set_name}) no evaluation files: run `dvc repro` first")
            continue
        verdicts = {s: Verdicts.from_results([json.loads(line) for line in p.read_text().splitlines()])
                    for s, p in paths.items()}
        bounds: dict[str, list[float]] = {}
        times = []
        for seed in range(args.seeds):
            start = time.perf_counter()
            scores, deltas = evidence(verdicts, args.resamples, seed)
            times.append(time.perf_counter() - start)
            for s, values in scores.items():
                for k, v in values.items():
                    if k.endswith(("_lo", "_hi")):
                        bounds.setdefault(f"{s}.{k}", []).append(v)
            for pair, metrics in deltas.items():
                for m, d in metrics.items():
                    for side in ("lo", "hi"):
                        bounds.setdefault(f"{pair}.{m}.{side}", []).append(d[side])
        n = len(next(iter(verdicts.values())))
        main = {k: v for k, v in bounds.items() if not is_group_bound(k)}
        groups = {k: v for k, v in bounds.items() if is_group_bound(k)}
        for label, chosen in (("metrics and differences", main), ("per-group scores", groups)):
            if not chosen:
                continue
            spread = max(float(np.max(np.abs(np.array(v) - np.mean(v)))) for v in chosen.values())
            sd = max(float(np.std(v, ddof=1)) for v in chosen.values())
            print(f"({set_name}) {n} prompts, {len(chosen)} bounds of {label}, {args.seeds} bootstrap seeds x "
                  f"{args.resamples} resamples: largest standard deviation of a bound over the seeds {sd:.4f}, "
                  f"largest distance from its mean {spread:.4f}")
        print(f"({set_name}) {np.median(times):.2f} s per set's evidence (median)")


if __name__ == "__main__":
    main()
