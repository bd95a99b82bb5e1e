"""The study (ecd/study.py): its plan of experiments, and its report from per-prompt verdicts.

The runs here are rows as ``dvc exp show`` gives them and verdicts built from evaluation records; the
real experiments behind a study are DVC's (``ecd study run`` drives ``dvc exp run --temp`` through
``ecd profile run``, which tests/test_profiles.py runs for real).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from ecd.errors import EcdError
from ecd.study import ARMS, COLUMNS, COMPARISONS, OWN_SETS, holds, pending, plan, run, summarise
from ecd.study_report import chart, markdown, seeds_needed
from ecd.uncertainty import Verdicts, seed_interval


def test_plan_runs_seed_by_seed_ecd_first_on_matched_rows() -> None:
    steps = plan("smollm2", [0, 1], ["ecd", "random", "model_gap"])
    assert [n for n, _ in steps] == ["smollm2-ecd-rpo-s0", "smollm2-random-rpo-s0", "smollm2-model_gap-rpo-s0",
                                     "smollm2-grpo-rpo-s0", "smollm2-ecd-rpo-s1", "smollm2-random-rpo-s1",
                                     "smollm2-model_gap-rpo-s1", "smollm2-grpo-rpo-s1"]
    sets = dict(steps)["smollm2-random-rpo-s1"]
    assert "pair.match=[ecd,random,model_gap]" in sets and "pair.strategy=[random]" in sets
    assert {"train.seed=1", "student.seed=1", "pair.seed=1", "train.dpo.loss_type=[sigmoid,sft]"} <= set(sets)
    # each run evaluates only the arms it holds: ECD's with the shared ones, the others their own student
    assert {"train.grpo.enabled=false", "evaluate.students=[preference]"} <= set(sets)
    assert "evaluate.students=[base,control,preference]" in dict(steps)["smollm2-ecd-rpo-s1"]
    # GRPO alone, on ECD's cell (the seed's preference training restored by DVC's run-cache)
    ecd_cell = [x for x in dict(steps)["smollm2-ecd-rpo-s1"] if x not in OWN_SETS["ecd"]]
    assert dict(steps)["smollm2-grpo-rpo-s1"] == [*ecd_cell, "evaluate.students=[grpo]"]
    ablated = plan("smollm2", [0, 1], ["ecd", "random"], guard_ablation=[0])
    assert [n for n, _ in ablated][:4] == ["smollm2-ecd-rpo-s0", "smollm2-random-rpo-s0", "smollm2-grpo-rpo-s0",
                                           "smollm2-noguard-rpo-s0"]
    guardless = dict(ablated)["smollm2-noguard-rpo-s0"]
    assert guardless == [*dict(ablated)["smollm2-grpo-rpo-s0"][:-1], *OWN_SETS["noguard"]]
    # without GRPO: the strategies' runs alone, seed by seed
    assert [n for n, _ in plan("smollm2", [0, 1], ["ecd", "random"], guard_ablation=[0], grpo=False)] == [
        "smollm2-ecd-rpo-s0", "smollm2-random-rpo-s0", "smollm2-ecd-rpo-s1", "smollm2-random-rpo-s1"]
    # the extra arm pairs the rows the others match: adding it changes no other run's overrides
    extra = dict(plan("smollm2", [1], ["ecd", "random", "model_gap", "seed_answer"]))
    assert all(extra[n] == sets for n, sets in steps if n in extra)
    assert "pair.match=[ecd,random,model_gap]" in extra["smollm2-seed_answer-rpo-s1"]
    assert "pair.strategy=[seed_answer]" in extra["smollm2-seed_answer-rpo-s1"]


def test_a_grpo_run_is_pending_unless_its_seeds_ecd_run_holds_grpo() -> None:
    steps = plan("smollm2", [0, 1], ["ecd", "random"])
    older = {"name": "smollm2-ecd-rpo-s0", "students": ["base", "control", "grpo", "preference"]}  # a record's header
    newer = {"name": "smollm2-ecd-rpo-s1", "params": {"evaluate.students": ["base", "control", "preference"]}}
    have = {older["name"]: older, newer["name"]: newer}
    assert [n for n, _ in pending("smollm2", steps, have)] == ["smollm2-random-rpo-s0", "smollm2-random-rpo-s1",
                                                              "smollm2-grpo-rpo-s1"]
    assert holds(older, "grpo") and not holds(newer, "grpo") and holds({"params": {}}, "grpo")  # before the param: all


def test_a_study_without_ecd_is_refused_before_anything_runs() -> None:
    with pytest.raises(EcdError, match="must include ecd"):
        run("smollm2", [0], ["random", "model_gap"], [])


def _verdicts(follow: np.ndarray, prefix: str = "p") -> Verdicts:
    return Verdicts.from_results([{"key": f"{prefix}{i}", "prompt": f"{prefix}{i}", "follow_instruction_list": [bool(f)],
                                   "follow_instruction_list_loose": [bool(f or i % 7 == 0)]} for i, f in enumerate(follow)])


def _study(seeds: list[int], strategies: dict[int, list[str]]) -> tuple[list[dict], dict]:
    """Exp rows for each seed's runs and their students' answers: ECD's student follows more prompts
    than the control by construction, random's and model_gap's a few more, GRPO as many."""
    rng = np.random.default_rng(1)
    rows, answers = [], {}
    for s in seeds:
        n = {"heldout": 40 + 10 * s, "ifeval": 300, "ifbench": 200}  # each seed its own held-out prompts
        base = {k: rng.random(v) < 0.2 for k, v in n.items()}
        ctl = {k: base[k] | (rng.random(len(v)) < 0.1) for k, v in base.items()}
        for strategy in strategies[s]:
            lift = {"ecd": 0.25, "random": 0.05, "model_gap": 0.02, "seed_answer": 0.1, "noguard": 0.25}[strategy]
            pref = {k: v | (rng.random(len(v)) < lift) for k, v in ctl.items()}
            if strategy == "noguard":  # the ECD run again: the same students but GRPO, which gained more
                pref = answers[f"smollm2-ecd-rpo-s{s}"]["preference"]
            students = {"base": base, "control": ctl, "grpo": pref if strategy == "noguard" else ctl, "preference": pref}
            name = f"smollm2-{strategy}-rpo-s{s}"
            answers[name] = {m: {k: v if isinstance(v, Verdicts) else _verdicts(v, f"{k}{s}-" if k == "heldout" else k)
                                 for k, v in sets.items()} for m, sets in students.items()}
            rows.append({"name": name, "state": "success", "rev": name})
    rows.append({"name": "smollm2-ecd-rpo-s9", "state": "queued", "rev": "x"})  # not finished: not read
    return rows, answers


def test_summary_pools_seeds_for_every_arm_against_control_and_ecd() -> None:
    rows, answers = _study([0, 1, 2], {0: ["ecd", "random", "model_gap", "seed_answer", "noguard"],
                                       1: ["ecd", "random", "model_gap"], 2: ["ecd", "random"]})
    study = summarise(rows, "smollm2", read=lambda rev, model, s: answers[rev][model][s], resamples=4000)
    assert study.seeds == [0, 1, 2] and set(study.scores) == set(ARMS)
    assert set(study.cells) == set(COMPARISONS)
    ecd = study.cells[("ecd", "control")][("ifeval", "strict")]
    by_hand = np.mean([answers[f"smollm2-ecd-rpo-s{s}"]["preference"]["ifeval"].follow_all["strict"].mean()
                       - answers[f"smollm2-ecd-rpo-s{s}"]["control"]["ifeval"].follow_all["strict"].mean() for s in range(3)])
    assert ecd.delta == pytest.approx(by_hand) and ecd.lo < ecd.delta < ecd.hi and ecd.lo > 0 and ecd.seeds == [0, 1, 2]
    assert study.cells[("model_gap", "ecd")][("ifeval", "strict")].seeds == [0, 1]  # seed 2 has no model_gap run
    assert study.cells[("seed_answer", "ecd")][("ifeval", "strict")].seeds == [0]  # the extra arm, where it ran
    assert study.cells[("grpo", "control")][("ifbench", "loose")].delta == 0.0  # GRPO answered as the control did
    unguarded = study.cells[("grpo", "grpo_noguard")][("ifeval", "strict")]  # the ablation, seed 0 only
    assert unguarded.seeds == [0] and unguarded.delta < 0
    assert study.prompts["heldout"] == [40, 50, 60]  # held-out prompts differ by seed, pooled all the same
    held = study.cells[("ecd", "control")][("heldout", "strict")]
    assert held.lo < held.delta < held.hi and held.mde > 0
    text = markdown(study)
    assert text.count("\n| ") == len(ARMS) + 2 * len(COMPARISONS) + 3  # three header rows
    for (a, b), by_column in study.cells.items():  # the third table: seeds needed for the difference seen
        row = [line for line in text.splitlines() if line.startswith(f"| {a} − {b} |")][-1].strip("| ").split(" | ")[1:]
        for cell_text, column in zip(row, COLUMNS):
            cell = by_column[column]
            if cell.lo > 0 or cell.hi < 0:
                assert cell_text == "detected"
            else:
                expected = seeds_needed(cell, abs(cell.delta))
                assert cell_text == ("none" if expected is None else str(expected)) and (expected is None or expected >= 3)
    assert "| random − ecd | " in text and "mde" in text and "Seeds: 0, 1, 2" in text
    spec = chart(study).spec
    assert len(spec["data"]["values"]) == sum(len(c) for c in study.cells.values()) == len(COMPARISONS) * len(COLUMNS)
    assert seeds_needed(ecd, ecd.mde / 2) == 12  # half the detectable effect: four times the seeds


def test_grpo_is_read_from_its_own_run_or_from_an_older_ecd_run() -> None:
    rows, answers = _study([0, 1], {0: ["ecd", "random"], 1: ["ecd", "random"]})  # seed 0: GRPO in its ECD run
    ecd1 = next(r for r in rows if r["name"] == "smollm2-ecd-rpo-s1")
    ecd1["params"] = {"evaluate.students": ["base", "control", "preference"]}  # seed 1: GRPO a run of its own
    alone = {k: _verdicts(np.ones(len(v), dtype=bool), f"{k}1-" if k == "heldout" else k)
             for k, v in answers["smollm2-ecd-rpo-s1"]["control"].items()}
    answers["smollm2-grpo-rpo-s1"] = {"grpo": alone}
    rows.append({"name": "smollm2-grpo-rpo-s1", "state": "success", "rev": "smollm2-grpo-rpo-s1",
                 "params": {"evaluate.students": ["grpo"]}})
    study = summarise(rows, "smollm2", read=lambda rev, model, s: answers[rev][model][s], resamples=500)
    assert study.scores["grpo"][("ifeval", "strict")] == [
        answers["smollm2-ecd-rpo-s0"]["grpo"]["ifeval"].follow_all["strict"].mean(), 1.0]
    assert study.cells[("grpo", "control")][("ifeval", "strict")].seeds == [0, 1]


def test_the_chart_renders_offline(tmp_path) -> None:
    from ecd.charts import render

    rows, answers = _study([0, 1], {0: ["ecd", "random", "model_gap"], 1: ["ecd", "random"]})
    drawn = chart(summarise(rows, "smollm2", read=lambda rev, m, s: answers[rev][m][s], resamples=500))
    written = render([drawn], tmp_path)
    assert {p.suffix for p in written} == {".svg", ".png"} and all(p.stat().st_size > 1000 for p in written)
    labels = {v["comparison"] for v in drawn.spec["data"]["values"]}  # each row says the seeds it pools
    assert {"ecd − control (2 seeds)", "model_gap − ecd (1 seed)"} <= labels


def test_arms_scored_on_different_prompts_are_not_compared() -> None:
    rows, answers = _study([0], {0: ["ecd", "random"]})
    answers["smollm2-random-rpo-s0"]["preference"]["ifeval"] = _verdicts(np.ones(300, dtype=bool), "other")
    with pytest.raises(EcdError, match="different ifeval prompts"):
        summarise(rows, "smollm2", read=lambda rev, m, s: answers[rev][m][s], resamples=500)


def test_no_finished_run_is_an_error() -> None:
    with pytest.raises(EcdError, match="no finished runs of a smollm2 study"):
        summarise([{"name": "smollm2-ecd-rpo-s0", "state": "running", "rev": "r"}], "smollm2", read=lambda *a: None)


def test_seed_interval_over_runs_on_their_own_prompts() -> None:
    rng = np.random.default_rng(3)
    diffs = [rng.choice([-1.0, 0.0, 1.0], size=n, p=[0.1, 0.6, 0.3]) for n in (40, 55, 70)]
    got = seed_interval(diffs, 5000, 0, shared_prompts=False)
    assert got["delta"] == pytest.approx(np.mean([d.mean() for d in diffs])) and got["lo"] < got["delta"] < got["hi"]
    assert got == seed_interval(diffs, 5000, 0, shared_prompts=False)  # seeded: the same bounds every time
    with pytest.raises(ValueError, match="different prompts"):
        seed_interval(diffs, 5000, 0)


def _records(n: int, rate: float, rng: np.random.Generator, prefix: str) -> list[dict]:
    """Evaluation records as data/eval/<student>/<set>.jsonl holds them: two constraints a prompt,
    strict and loose verdicts, and now and then an instruction that could not be scored."""
    out = []
    for i in range(n):
        strict = [bool(rng.random() < rate), bool(rng.random() < rate)]
        loose = [s or bool(rng.random() < 0.2) for s in strict]
        if i % 17 == 5:
            strict[1] = loose[1] = None  # type: ignore[call-overload]
        out.append({"key": f"{prefix}{i}", "prompt": f"prompt {i}", "instruction_id_list": ["punctuation:no_comma", "detectable_format:title"],
                    "follow_instruction_list": strict, "follow_instruction_list_loose": loose})
    return out


def test_records_carry_a_study_to_where_its_experiments_are_not(tmp_path) -> None:
    """`ecd study run` writes each finished run's record; a report read from the records alone (a
    fresh clone, another machine) is the report read from the experiments, to the byte."""
    from ecd.study import read_any, record, record_rows

    rng = np.random.default_rng(7)
    evals: dict[str, dict[str, dict[str, list[dict]]]] = {}
    rows = []
    for s in (0, 1):
        base = {k: _records(n, 0.3, rng, f"{k}{s}-" if k == "heldout" else k) for k, n in (("heldout", 30 + s), ("ifeval", 80), ("ifbench", 60))}
        for strategy in ("ecd", "random", "model_gap"):
            name = f"smollm2-{strategy}-rpo-s{s}"
            evals[name] = {m: base if m in ("base", "control") else
                           {k: _records(len(v), 0.45, rng, f"{k}{s}-" if k == "heldout" else k) for k, v in base.items()}
                           for m in ("base", "control", "preference", "grpo")}
            rows.append({"name": name, "state": "success", "rev": name, "params": {"train.seed": s}, "baseline": {"train.seed": 0}})
    paths = [record("smollm2", r, tmp_path, read=lambda rev, m, k: evals[rev][m][k]) for r in rows]
    assert [p.name for p in paths] == [f"{r['name']}.jsonl" for r in rows]
    head = json.loads(paths[3].read_text().splitlines()[0])
    assert head["experiment"] == "smollm2-ecd-rpo-s1" and head["params"] == {"train.seed": 1}
    assert head["students"] == ["base", "control", "grpo", "preference"]  # what the study reads from an ECD run
    assert json.loads(paths[4].read_text().splitlines()[0])["students"] == ["preference"]

    from_experiments = summarise(rows, "smollm2", read=lambda rev, m, k: Verdicts.from_results(evals[rev][m][k]), resamples=2000)
    from_records = summarise(record_rows("smollm2", tmp_path), "smollm2", read=read_any, resamples=2000)
    assert markdown(from_records) == markdown(from_experiments)
    assert from_records.cells[("ecd", "control")][("ifeval", "strict")].seeds == [0, 1]

    lines = paths[0].read_text().splitlines()
    lines[2] = lines[2].replace('"strict":[', '"strict":7,[', 1)
    paths[0].write_text("\n".join(lines) + "\n")
    with pytest.raises(EcdError, match=rf"{paths[0]}:3: not a study record line"):
        read_any(f"record:{paths[0]}", "control", "ifeval")
