"""The arithmetic behind every interval, on fixed inputs: the paired bootstrap against a plain one
written independently, McNemar's exact test against its binomial definition, the detectable effect
against its formula, and the interval over seeds. No score of a trained model is thresholded here."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ecd.uncertainty import (COMPARISONS, Verdicts, compare, evidence, intervals, mcnemar_exact, min_detectable,
                             resample_weights, seed_interval)


def _records(rng: np.random.Generator, n: int, p: float) -> list[dict]:
    """Evaluation records of ``n`` prompts with 1-3 instructions, each followed with probability p."""
    out = []
    for i in range(n):
        strict = [bool(x) for x in rng.random(rng.integers(1, 4)) < p]
        loose = [s or bool(rng.random() < 0.3) for s in strict]
        out.append({"key": str(i), "prompt": f"p{i}", "follow_instruction_list": strict,
                    "follow_all_instructions": all(strict), "follow_instruction_list_loose": loose})
    return out


def _plain_paired_bootstrap(a: list[dict], b: list[dict], resamples: int, seed: int) -> dict[str, tuple[float, float]]:
    """A paired bootstrap written the plain way: draw prompt indices, score both students on them."""
    rng = np.random.default_rng(seed + 12345)
    n = len(a)
    stats: dict[str, list[float]] = {"a_prompt": [], "d_prompt": [], "a_inst": [], "d_inst": []}
    for _ in range(resamples):
        idx = rng.integers(0, n, n)
        def prompt(recs: list[dict]) -> float:
            return sum(all(recs[i]["follow_instruction_list"]) for i in idx) / n
        def inst(recs: list[dict]) -> float:
            return sum(sum(recs[i]["follow_instruction_list"]) for i in idx) / sum(len(recs[i]["follow_instruction_list"]) for i in idx)
        stats["a_prompt"].append(prompt(a))
        stats["d_prompt"].append(prompt(a) - prompt(b))
        stats["a_inst"].append(inst(a))
        stats["d_inst"].append(inst(a) - inst(b))
    return {k: tuple(np.quantile(v, [0.025, 0.975])) for k, v in stats.items()}  # type: ignore[misc]


def test_paired_bootstrap_agrees_with_a_plain_one() -> None:
    rng = np.random.default_rng(0)
    a, b = _records(rng, 300, 0.6), _records(rng, 300, 0.5)
    va, vb = Verdicts.from_results(a), Verdicts.from_results(b)
    bounds, draws = intervals({"a": va, "b": vb}, 4000, seed=7)
    d = compare(va, vb, draws["a"], draws["b"])
    plain = _plain_paired_bootstrap(a, b, 4000, seed=7)
    # two Monte Carlo estimates of the same quantiles: equal within their sampling error (about 0.003 here)
    for ours, theirs in ((bounds["a"]["prompt_strict"], plain["a_prompt"]), (bounds["a"]["inst_strict"], plain["a_inst"]),
                         ((d["prompt_strict"]["lo"], d["prompt_strict"]["hi"]), plain["d_prompt"]),
                         ((d["inst_strict"]["lo"], d["inst_strict"]["hi"]), plain["d_inst"])):
        assert ours == pytest.approx(theirs, abs=0.01)
    # the point estimates are the plain metrics
    assert d["prompt_strict"]["delta"] == pytest.approx(
        np.mean([all(r["follow_instruction_list"]) for r in a]) - np.mean([all(r["follow_instruction_list"]) for r in b]))


def test_pairing_narrows_the_interval_of_correlated_students() -> None:
    """Two students that agree on most prompts: the paired interval of their difference is much
    narrower than the two separate intervals would suggest."""
    rng = np.random.default_rng(1)
    a = _records(rng, 400, 0.5)
    b = [dict(r) for r in a]
    for r in b[:20]:  # b fails 20 prompts that a follows or not
        r["follow_instruction_list"] = [False] * len(r["follow_instruction_list"])
    va, vb = Verdicts.from_results(a), Verdicts.from_results(b)
    bounds, draws = intervals({"a": va, "b": vb}, 2000, seed=0)
    d = compare(va, vb, draws["a"], draws["b"])["prompt_strict"]
    separate = (bounds["a"]["prompt_strict"][1] - bounds["a"]["prompt_strict"][0]) / 2
    assert d["hi"] - d["lo"] < separate
    assert d["lo"] >= 0.0  # b never follows a prompt a does not: the difference is never negative


def test_resamples_are_the_same_for_the_same_seed_and_stable_across_seeds() -> None:
    first = np.concatenate(list(resample_weights(50, 3000, seed=3)))
    again = np.concatenate(list(resample_weights(50, 3000, seed=3)))
    assert (first == again).all() and (first.sum(axis=1) == 50).all()
    rng = np.random.default_rng(2)
    v = {"a": Verdicts.from_results(_records(rng, 541, 0.3))}
    b1, _ = intervals(v, 10_000, seed=0)
    b2, _ = intervals(v, 10_000, seed=1)
    # 10,000 resamples: bounds within ±0.004 of each other's on an IFEval-sized set (the default 25,000 halves it)
    assert abs(b1["a"]["prompt_strict"][0] - b2["a"]["prompt_strict"][0]) <= 0.004
    assert abs(b1["a"]["prompt_strict"][1] - b2["a"]["prompt_strict"][1]) <= 0.004


def test_mcnemar_exact_is_the_binomial_tail() -> None:
    a = np.array([True] * 9 + [False] * 2 + [True] * 30)
    b = np.array([False] * 9 + [True] * 2 + [True] * 30)  # 9 prompts only a, 2 only b, 30 both
    expected = 2 * sum(math.comb(11, i) for i in range(3)) / 2**11
    assert mcnemar_exact(a, b) == pytest.approx(expected)
    assert mcnemar_exact(a, a) == 1.0
    assert mcnemar_exact(b, a) == mcnemar_exact(a, b)


def test_detectable_effect_follows_the_disagreement() -> None:
    """Prompt level: (z_0.975 + z_0.8) · sqrt(discordant share / n)."""
    rng = np.random.default_rng(4)
    a = _records(rng, 500, 0.5)
    b = [dict(r, follow_instruction_list=list(r["follow_instruction_list"])) for r in a]
    for r in b[:50]:
        r["follow_instruction_list"] = [not x for x in r["follow_instruction_list"]]
    va, vb = Verdicts.from_results(a), Verdicts.from_results(b)
    _, draws = intervals({"a": va, "b": vb}, 1000, seed=0)
    d = compare(va, vb, draws["a"], draws["b"])["prompt_strict"]
    discordant = float(np.mean(va.follow_all["strict"] != vb.follow_all["strict"]))
    assert d["mde"] == pytest.approx(2.8016 * math.sqrt(discordant / 500), rel=1e-3)
    assert min_detectable(0.01) == pytest.approx(0.028016, rel=1e-4)


def test_evidence_names_every_comparison_of_present_students() -> None:
    rng = np.random.default_rng(5)
    v = {s: Verdicts.from_results(_records(rng, 60, 0.5)) for s in ("base", "sft", "control", "preference", "grpo")}
    scores, deltas = evidence(v, 500, seed=0)
    assert set(deltas) == {f"{a}-{b}" for a, b in COMPARISONS}
    without_grpo = {k: x for k, x in v.items() if k != "grpo"}  # a run from before the grpo stage
    assert set(evidence(without_grpo, 100, seed=0)[1]) == {f"{a}-{b}" for a, b in COMPARISONS if "grpo" not in (a, b)}
    for s in v:
        for m in ("prompt_strict", "inst_strict", "prompt_loose", "inst_loose"):
            assert scores[s][f"{m}_lo"] <= scores[s][m] <= scores[s][f"{m}_hi"]
    assert "p" in deltas["preference-control"]["prompt_strict"] and "p" not in deltas["preference-control"]["inst_strict"]
    with pytest.raises(ValueError, match="different prompts"):
        intervals({"a": v["base"], "b": Verdicts.from_results(_records(rng, 61, 0.5))}, 100, 0)


def test_seed_interval_widens_with_the_seeds_spread_and_keeps_prompt_noise_with_one_run() -> None:
    rng = np.random.default_rng(6)
    base = (rng.random(400) < 0.1).astype(float) - (rng.random(400) < 0.05).astype(float)
    one = seed_interval([base], 4000, seed=0)
    assert one["runs"] == 1 and one["seed_sd"] == 0.0 and one["lo"] < one["delta"] < one["hi"]
    agree = seed_interval([base, base, base], 4000, seed=0)  # identical runs: prompts only
    assert agree["hi"] - agree["lo"] == pytest.approx(one["hi"] - one["lo"], abs=0.005)
    shifted = [base + 0.04, base - 0.04, base]  # three runs whose margins differ by ±0.04
    spread = seed_interval(shifted, 4000, seed=0)
    assert spread["seed_sd"] == pytest.approx(0.04)
    assert spread["hi"] - spread["lo"] > agree["hi"] - agree["lo"] + 0.1  # t with 2 df on sd/sqrt(3)
    with pytest.raises(ValueError, match="different prompts"):
        seed_interval([base, base[:-1]], 100, 0)


def test_group_intervals_resample_by_prompt_and_bracket_the_group_score() -> None:
    """Per constraint group: the instructions of that group only, resampled with their prompts."""
    from ecd.uncertainty import group_intervals

    rng = np.random.default_rng(8)
    ids = ["punctuation:no_comma", "detectable_format:title", "count:numbers"]  # style, format, IFBench's count
    records = []
    for i in range(300):
        chosen = [ids[j] for j in sorted(set(rng.integers(0, 3, rng.integers(1, 3))))]
        follow = [bool(rng.random() < (0.8 if t.startswith("punctuation") else 0.3)) for t in chosen]
        records.append({"key": str(i), "prompt": str(i), "instruction_id_list": chosen, "follow_instruction_list": follow})
    v = Verdicts.from_results(records)
    assert set(v.groups) == {"style", "format", "count"}
    bounds = group_intervals(v, 3000, seed=0)
    for group, prefix in (("style", "punctuation"), ("format", "detectable_format"), ("count", "count")):
        pairs = [(t, f) for r in records for t, f in zip(r["instruction_id_list"], r["follow_instruction_list"])
                 if t.startswith(prefix)]
        value = sum(f for _, f in pairs) / len(pairs)
        lo, hi = bounds[group]
        assert lo < value < hi and hi - lo < 0.2
    assert bounds["style"][0] > bounds["format"][1]  # 0.8 against 0.3: told apart
