"""How sure a score is: intervals on every metric, paired differences between students, an exact
test, the smallest difference a run could see, and the spread over seeds.

The unit of resampling is the prompt. An evaluation set is a sample of prompts; two students
answer the same prompts, so their difference is *paired*: each resample draws prompts with
replacement once and scores both students on that same draw, which cancels the prompts' common
difficulty. Instruction-level metrics are ratios (instructions followed over instructions) and are
resampled by prompt too, never by instruction, because the instructions of one prompt share its
answer. Intervals are percentile intervals of ``resamples`` draws (docs/evidence.md says why not
BCa or a normal approximation). Prompt-level verdicts also get McNemar's exact test: under "no
difference", the prompts where exactly one of the two students succeeds split 50/50.

Across seeds, a preference run's margin over its control varies with training randomness as well
as with the prompts. :func:`seed_interval` resamples prompts as above and adds the seeds' part as a
Student t draw scaled by the seeds' standard error, which keeps its width honest with 2–5 seeds
(a bootstrap over 2 seeds has three possible means and would pretend to know the seed variance).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: the metrics of IFEval, in its order
METRICS = ("prompt_strict", "inst_strict", "prompt_loose", "inst_loose")
#: two-sided level of every interval and test
LEVEL = 0.95
#: z for a two-sided 5 % test and for 80 % power: the minimum detectable effect is their sum
#: times the standard error of the difference
Z_ALPHA, Z_POWER = 1.959964, 0.841621
#: resamples are drawn in blocks of this many, to bound memory on large sets
_BLOCK = 2000


@dataclass(frozen=True)
class Verdicts:
    """One student's per-prompt verdicts on one evaluation set, strict and loose: for each prompt
    whether all its instructions were followed and how many of how many were. Prompts are keyed
    so that two students can be paired only on the same prompts."""

    keys: tuple[str, ...]
    follow_all: dict[str, np.ndarray]  #: mode → bool per prompt
    followed: dict[str, np.ndarray]  #: mode → instructions followed per prompt
    n_inst: np.ndarray  #: instructions per prompt
    #: constraint group → (instructions of the group followed, strict; instructions of the group), per prompt
    groups: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @classmethod
    def from_results(cls, records: Sequence[Mapping[str, Any]]) -> "Verdicts":
        """From evaluation records (``data/eval/<model>/<set>.jsonl``): IFEval's strict fields
        ``follow_instruction_list`` and, where present, the loose ``follow_instruction_list_loose``.
        A prompt with an instruction that could not be scored (``None``) is left out, as the
        metrics leave it out."""
        records = [r for r in records if None not in r["follow_instruction_list"]]
        keys = tuple(str(r["key"] if "key" in r else r["prompt"]) for r in records)
        strict = [list(map(bool, r["follow_instruction_list"])) for r in records]
        loose = [list(map(bool, r.get("follow_instruction_list_loose", r["follow_instruction_list"]))) for r in records]
        n_inst = np.array([len(f) for f in strict], dtype=np.int64)
        follow_all = {"strict": np.array([all(f) for f in strict]), "loose": np.array([all(f) for f in loose])}
        followed = {"strict": np.array([sum(f) for f in strict], dtype=np.int64),
                    "loose": np.array([sum(f) for f in loose], dtype=np.int64)}
        groups: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if all("instruction_id_list" in r for r in records):
            from ecd import constraints as C

            names = [[C.get(i).group for i in r["instruction_id_list"]] for r in records]
            for g in sorted({g for row in names for g in row}):
                groups[g] = (np.array([sum(ok for name, ok in zip(row, f) if name == g) for row, f in zip(names, strict)]),
                             np.array([row.count(g) for row in names]))
        return cls(keys, follow_all, followed, n_inst, groups)

    def __len__(self) -> int:
        return len(self.keys)

    def value(self, metric: str, weights: np.ndarray | None = None) -> np.ndarray | float:
        """The metric on the prompts as they are, or under each row of ``weights`` (a resample's
        prompt counts, shape resamples × prompts)."""
        level, mode = metric.split("_")
        if level == "prompt":
            x = self.follow_all[mode].astype(np.float64)
            return float(x.mean()) if weights is None else weights @ x / len(self)
        num, den = self.followed[mode].astype(np.float64), self.n_inst.astype(np.float64)
        if weights is None:
            return float(num.sum() / max(den.sum(), 1.0))
        return (weights @ num) / np.maximum(weights @ den, 1.0)


def resample_weights(n: int, resamples: int, seed: int) -> Iterable[np.ndarray]:
    """Blocks of bootstrap weights (how often each of ``n`` prompts is drawn), the same blocks for
    the same ``(n, resamples, seed)``: every student of a set is scored on the same draws, which is
    what makes the differences paired.

    A report over many runs asks for the same draws again and again (every run of a set, every
    set): up to ``_KEPT_BYTES`` of them are kept, so they are drawn once."""
    if n * resamples * 8 <= _KEPT_BYTES:
        yield from _kept_weights(n, resamples, seed)
    else:
        yield from _draw_weights(n, resamples, seed)


def _draw_weights(n: int, resamples: int, seed: int) -> Iterable[np.ndarray]:
    rng = np.random.default_rng(seed)
    p = np.full(n, 1.0 / n)
    done = 0
    while done < resamples:
        size = min(_BLOCK, resamples - done)
        yield rng.multinomial(n, p, size=size).astype(np.float64)
        done += size


#: the most bytes of bootstrap weights one draw may keep (IFEval's 541 prompts × 25,000: 108 MB)
_KEPT_BYTES = 160 * 2**20


@functools.lru_cache(maxsize=3)
def _kept_weights(n: int, resamples: int, seed: int) -> tuple[np.ndarray, ...]:
    blocks = tuple(_draw_weights(n, resamples, seed))
    for b in blocks:
        b.setflags(write=False)  # shared by every caller: none may change them
    return blocks


def _bounds(draws: np.ndarray) -> tuple[float, float]:
    lo, hi = np.quantile(draws, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return float(lo), float(hi)


def intervals(verdicts: dict[str, Verdicts], resamples: int, seed: int
              ) -> tuple[dict[str, dict[str, tuple[float, float]]], dict[str, dict[str, np.ndarray]]]:
    """Every metric of every student with its 95 % interval; also the draws themselves (student →
    metric → array), which :func:`compare` reuses so that differences come from the same draws."""
    students = list(verdicts)
    n = _same_prompts(verdicts)
    draws: dict[str, dict[str, list[np.ndarray]]] = {s: {m: [] for m in METRICS} for s in students}
    for w in resample_weights(n, resamples, seed):
        for s in students:
            for m in METRICS:
                draws[s][m].append(verdicts[s].value(m, w))
    joined = {s: {m: np.concatenate(d) for m, d in ms.items()} for s, ms in draws.items()}
    return {s: {m: _bounds(joined[s][m]) for m in METRICS} for s in students}, joined


def _same_prompts(verdicts: dict[str, Verdicts]) -> int:
    keys = {v.keys for v in verdicts.values()}
    if len(keys) != 1:
        raise ValueError("the students were scored on different prompts: they cannot be paired")
    return len(next(iter(keys)))


def mcnemar_exact(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided exact McNemar p-value for paired binary verdicts: the discordant prompts (one
    student right, the other wrong) are Binomial(discordant, 1/2) under no difference."""
    only_a = int(np.sum(a & ~b))
    only_b = int(np.sum(~a & b))
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
    return min(1.0, 2.0 * tail)


def min_detectable(se: float) -> float:
    """The smallest true difference a two-sided 5 % test detects with 80 % power, for a difference
    whose standard error under no effect is ``se``."""
    return (Z_ALPHA + Z_POWER) * se


def compare(a: Verdicts, b: Verdicts, draws_a: dict[str, np.ndarray], draws_b: dict[str, np.ndarray]
            ) -> dict[str, dict[str, float]]:
    """``a − b`` on every metric: the difference, its paired 95 % interval (from the two students'
    draws on the same resamples), the smallest effect the set could detect, and for prompt-level
    metrics McNemar's exact p-value. For prompt-level metrics the standard error behind the
    detectable effect is the one the discordant prompts give under no difference, sqrt(d/n); for
    instruction-level ones, the bootstrap's."""
    out: dict[str, dict[str, float]] = {}
    n = len(a)
    for m in METRICS:
        diff = draws_a[m] - draws_b[m]
        lo, hi = _bounds(diff)
        row = {"delta": float(a.value(m)) - float(b.value(m)), "lo": lo, "hi": hi}
        if m.startswith("prompt"):
            mode = m.split("_")[1]
            x, y = a.follow_all[mode], b.follow_all[mode]
            discordant = float(np.mean(x != y))
            row["mde"] = min_detectable(math.sqrt(discordant / max(n, 1)))
            row["p"] = mcnemar_exact(x, y)
        else:
            row["mde"] = min_detectable(float(np.std(diff, ddof=1)))
        out[m] = row
    return out


#: the differences a report compares: preference against control, each trained student against the
#: untrained one, the control against SFT (what continuing SFT on the pairs' rows added), and GRPO
#: against the control and the preference run (online against offline on the same instructions)
COMPARISONS = (("preference", "control"), ("preference", "base"), ("control", "base"), ("sft", "base"), ("preference", "sft"),
               ("control", "sft"), ("grpo", "control"), ("grpo", "preference"), ("grpo", "base"))


def evidence(verdicts: dict[str, Verdicts], resamples: int, seed: int
             ) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, dict[str, float]]]]:
    """For one evaluation set: each student's metrics with their intervals (``metric``,
    ``metric_lo``, ``metric_hi``), and each comparison of :data:`COMPARISONS` whose students are
    present, keyed ``"a-b"``."""
    bounds, draws = intervals(verdicts, resamples, seed)
    scores: dict[str, dict[str, float]] = {}
    for s, v in verdicts.items():
        scores[s] = {}
        for m in METRICS:
            scores[s][m] = float(v.value(m))
            scores[s][f"{m}_lo"], scores[s][f"{m}_hi"] = bounds[s][m]
        for g, (lo, hi) in group_intervals(v, resamples, seed).items():
            scores[s][f"inst_strict_{g}_lo"], scores[s][f"inst_strict_{g}_hi"] = lo, hi
    deltas = {f"{a}-{b}": compare(verdicts[a], verdicts[b], draws[a], draws[b])
              for a, b in COMPARISONS if a in verdicts and b in verdicts}
    return scores, deltas


def group_intervals(v: Verdicts, resamples: int, seed: int) -> dict[str, tuple[float, float]]:
    """Instruction-level strict accuracy within each constraint group, its 95 % interval resampled by
    prompt like the others (a prompt carries all its instructions of the group)."""
    out = {}
    for g, (followed, n) in v.groups.items():
        draws = [(w @ followed) / np.maximum(w @ n, 1.0) for w in resample_weights(len(v), resamples, seed)]
        out[g] = _bounds(np.concatenate(draws))
    return out


def seed_interval(diffs: Sequence[np.ndarray], resamples: int, seed: int, shared_prompts: bool = True) -> dict[str, float]:
    """A preference-minus-control margin over several seeds: ``diffs[j][i]`` is run j's per-prompt
    difference (e.g. 1, 0 or −1 for prompt-level verdicts).

    Each draw resamples the prompts and takes the runs' mean margin on it, then adds the seeds' part:
    ``s / sqrt(k) · T`` with ``s`` the standard deviation of the k runs' margins and ``T`` a Student
    t draw with k − 1 degrees of freedom. The t draw carries the uncertainty of ``s`` itself, which
    with 2–5 seeds dominates: with two seeds the interval is as wide as a t test with one degree of
    freedom makes it, not the three-point distribution a bootstrap over seeds would give. With one
    run the seeds' part is unknown and left out (the result says ``runs: 1``).

    ``shared_prompts``: every run answered the same prompts, so one draw of prompts serves them all
    (paired); otherwise (each seed's own held-out prompts) each run's prompts are drawn on their own."""
    k = len(diffs)
    if k == 0:
        raise ValueError("no runs")
    rows = [np.asarray(d, dtype=np.float64) for d in diffs]
    if shared_prompts and any(len(d) != len(rows[0]) for d in rows):
        raise ValueError("the runs were scored on different prompts")
    margins = np.array([d.mean() for d in rows])
    s = float(np.std(margins, ddof=1)) if k > 1 else 0.0
    rng = np.random.default_rng([seed, 1])
    draws = []
    if shared_prompts:
        matrix = np.vstack(rows)  # runs × prompts
        blocks: Iterable[np.ndarray] = (w @ matrix.T / len(rows[0]) for w in resample_weights(len(rows[0]), resamples, seed))
    else:
        per_run = zip(*(resample_weights(len(d), resamples, seed + 7919 * j) for j, d in enumerate(rows)))
        blocks = (np.column_stack([w @ d / len(d) for w, d in zip(ws, rows)]) for ws in per_run)
    for block in blocks:  # resamples × runs
        prompt_part = block.mean(axis=1)
        seed_part = s / math.sqrt(k) * rng.standard_t(k - 1, size=len(block)) if k > 1 else 0.0
        draws.append(prompt_part + seed_part)
    lo, hi = _bounds(np.concatenate(draws))
    return {"delta": float(margins.mean()), "lo": lo, "hi": hi, "runs": k, "seed_sd": s}


def bootstrap_settings() -> tuple[int, int]:
    """The bootstrap's resamples and seed from params.yaml (the defaults where it does not load)."""
    from ecd.errors import EcdError
    from ecd.params import EvaluateParams, load_params

    try:
        ev = load_params().evaluate
    except EcdError:
        ev = EvaluateParams()
    return ev.bootstrap_resamples, ev.bootstrap_seed
