"""End to end: the whole pipeline under DVC in a temporary git repo, on a small config.

Asserts on the content of every stage's output, then on DVC's promises: a second repro does
nothing, an experiment re-runs only what is downstream of its change, and push/pull through a
local remote reproduces the pairs byte for byte.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import Project, make_project
from test_report import _loads_something
from ecd import constraints as C
from ecd.api import read_round
from ecd.errors import EcdError
from ecd.records import read_jsonl
from ecd.study import OWN_SETS

pytestmark = pytest.mark.slow

SMALL = {
    "seeds": {"limit": 24},
    "evolve": {"chains_per_seed": 2},
    "student": {"vocab_size": 600, "hidden_size": 32, "intermediate_size": 64, "num_layers": 1,
                "num_heads": 2, "num_kv_heads": 1},
    "train": {"max_length": 256, "sft": {"steps": 4, "batch_size": 8, "warmup_steps": 0},
              "dpo": {"epochs": 0.2, "batch_size": 8},
              "grpo": {"max_prompts": 8, "prompts_per_step": 4, "max_completion_length": 16}},
    "pair": {"min_rejected_pass_fraction": 0.0},
    "evaluate": {"max_new_tokens": 16, "bootstrap_resamples": 4000},  # the arithmetic's precision: test_uncertainty
    "rounds": {"r1": {"prev": "r0"}, "r2": {"prev": "r1"}},
}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Project:
    proj = make_project(tmp_path_factory.mktemp("e2e") / "proj", SMALL)
    proj.commit("small config")
    proj.run("dvc", "repro")
    return proj


def _passes(text: str, cons: list[dict]) -> list[bool]:
    return [C.check(C.Constraint.from_record(c), text) for c in cons]


def test_the_api_pages_pipeline_example_runs(project: Project) -> None:
    """docs/api.md's second example, as written, on the run's outputs."""
    import sys

    from test_api import api_examples

    out = project.run(sys.executable, "-c", api_examples()[1]).stdout.splitlines()
    assert re.fullmatch(r"\d+ steps -> \{'ecd': \d+, 'random': \d+\} \d+ matched rows", out[0]), out[0]
    assert "missed by the rejected answer:" in out[1] and "'entries':" in out[2]


def test_seed_and_round_zero(project: Project) -> None:
    p = project.path
    seeds = read_jsonl(p / "data/rounds/r0/instructions.jsonl")
    assert len(seeds) == 24
    assert all(s["round"] == 0 and s["constraints"] == [] and s["reference"] for s in seeds)
    assert len({s["id"] for s in seeds}) == 24
    responses = {r["instruction_id"]: r for r in read_jsonl(p / "data/rounds/r0/responses.jsonl")}
    # the programmatic teacher answers a seed with its reference answer
    assert all(responses[s["id"]]["text"] == s["reference"] for s in seeds)
    state = read_round("r0", "state", p / "data/rounds")
    assert {e["root_id"] for e in state} <= {s["id"] for s in seeds} and len(state) >= 22
    assert all(e["response"] == responses[e["instruction"]["id"]] for e in state)


def test_evolution_rounds(project: Project) -> None:
    p = project.path
    for r in ("r1", "r2"):
        chains = read_round(r, "chains", p / "data/rounds")
        cands = {c["id"]: c for c in read_round(r, "instructions", p / "data/rounds")}
        metrics = json.loads((p / f"metrics/rounds/{r}/evolve.json").read_text())
        assert metrics["chains"] == len(chains) and metrics["evolved"] == len(cands)
        assert metrics["evolved"] + sum(metrics["eliminated_by_cause"].values()) == metrics["chains"]
        for ch in chains:
            if ch["candidate_id"] is None:
                assert ch["eliminated"]
                continue
            cand, parent = cands[ch["candidate_id"]], ch["parent"]["instruction"]
            # one operation: exactly one new constraint, appended to the parent's, text made longer
            assert cand["constraints"][:-1] == parent["constraints"]
            assert len(cand["constraints"]) == len(parent["constraints"]) + 1
            assert cand["text"].startswith(parent["text"]) and len(cand["text"]) > len(parent["text"])
            assert cand["parent_id"] == parent["id"] and cand["round"] == int(r[1:])
            # the new requirement was not already met by the chain's current answer
            assert not _passes(ch["parent"]["response"]["text"], cand["constraints"][-1:])[0]


def test_sampling_answers_every_candidate(project: Project) -> None:
    p = project.path
    for r in ("r1", "r2"):
        cands = read_round(r, "instructions", p / "data/rounds")
        responses = {x["instruction_id"]: x for x in read_round(r, "responses", p / "data/rounds")}
        assert set(responses) == {c["id"] for c in cands}
        for c in cands:
            # the programmatic teacher's answer: the reference rewritten for every constraint
            want = C.apply_rewrites(c["reference"], [C.Constraint.from_record(x) for x in c["constraints"]])
            assert responses[c["id"]]["text"] == (want or "")
            assert responses[c["id"]]["model"] == "programmatic:v1"


def test_verify_keeps_only_verified_steps(project: Project) -> None:
    p = project.path
    for r in ("r1", "r2"):
        steps = read_round(r, "steps", p / "data/rounds")
        state = read_round(r, "state", p / "data/rounds")
        metrics = json.loads((p / f"metrics/rounds/{r}/verify.json").read_text())
        assert steps and metrics["accepted"] == len(steps)
        assert len(state) == json.loads((p / f"metrics/rounds/{r}/evolve.json").read_text())["chains"]
        for s in steps:
            cons = s["instruction"]["constraints"]
            assert all(_passes(s["chosen"]["text"], cons))
            assert [x["passed"] for x in s["rejected_results"]] == _passes(s["rejected"]["text"], cons)


def test_round_files_hold_records_by_reference(project: Project, tmp_path: Path) -> None:
    """What a round made is written once; state, chains and steps name it by id (a chain that kept
    an older instruction holds it whole), and only the seeds hold their reference answer and source.
    Read back, the records are whole and agree with each other; a reference to nothing names its line."""
    p = project.path
    rounds = p / "data/rounds"
    for index, r in enumerate(("r1", "r2"), 1):
        raw_state = read_jsonl(rounds / r / "state.jsonl")
        assert all(("instruction_id" in e) == ("instruction" not in e) for e in raw_state)
        assert all(e["instruction"]["round"] < index for e in raw_state if "instruction" in e)
        assert sum("instruction_id" in e for e in raw_state) == len(read_jsonl(rounds / r / "steps.jsonl"))
        assert all(set(c["parent"]) == {"instruction_id", "response_id", "round"} for c in read_jsonl(rounds / r / "chains.jsonl"))
        assert all("chosen_results" not in s and "chosen" not in s for s in read_jsonl(rounds / r / "steps.jsonl"))
        assert all("reference" not in i and "source" not in i for i in read_jsonl(rounds / r / "instructions.jsonl"))
        before = {e["chain"] or e["root_id"]: e for e in read_round(f"r{index - 1}", "state", rounds)}
        chains = {c["chain"]: c for c in read_round(r, "chains", rounds)}
        state = {e["chain"]: e for e in read_round(r, "state", rounds)}
        seeds = {i["root_id"]: i for i in read_round("r0", "instructions", rounds)}
        for name, c in chains.items():
            was = before[name if index > 1 else c["root_id"]]
            assert c["parent"]["instruction"] == was["instruction"] and c["parent"]["response"] == was["response"]
        for step in read_round(r, "steps", rounds):
            assert step["rejected"] == chains[step["chain"]]["parent"]["response"]
            assert (state[step["chain"]]["instruction"], state[step["chain"]]["response"]) == (step["instruction"], step["chosen"])
            assert step["instruction"]["reference"] == seeds[step["root_id"]]["reference"]
            assert all(x["passed"] for x in step["chosen_results"]) and len(step["chosen_results"]) == len(step["instruction"]["constraints"])
    broken = tmp_path / "rounds"
    shutil.copytree(rounds, broken)
    lines = (broken / "r2/steps.jsonl").read_text().splitlines()
    lines[1] = re.sub(r'"instruction_id":"[0-9a-f]+"', '"instruction_id":"0000000000000000"', lines[1])
    (broken / "r2/steps.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(EcdError, match=r"r2/steps.jsonl:2: refers to instruction 0000000000000000, which is not in"):
        read_round("r2", "steps", broken)


def test_pairs_dataset(project: Project) -> None:
    from datasets import load_dataset

    p = project.path
    ds = load_dataset("parquet", data_dir=str(p / "data/pairs"))
    train, test = ds["train"], ds["test"]
    assert len(train) > 10 and len(test) > 0
    assert not set(train["root_id"]) & set(test["root_id"])
    for row in train:
        assert [m["role"] for m in row["prompt"]] == ["user"]
        assert row["chosen"][0]["role"] == row["rejected"][0]["role"] == "assistant"
        cons = [{"id": i, "kwargs": {k: v for k, v in kw.items() if v is not None}}
                for i, kw in zip(row["instruction_id_list"], row["kwargs"])]
        assert all(_passes(row["chosen"][0]["content"], cons))
        missed = [c["id"] for c, ok in zip(cons, _passes(row["rejected"][0]["content"], cons)) if not ok]
        assert missed == row["missed_constraints"] and set(missed) & set(row["new_constraints"])
    card = (p / "data/pairs/README.md").read_text()
    assert f"{len(train) + len(test)} ({len(train)} train, {len(test)} test" in card


def test_student(project: Project) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = project.path
    info = json.loads((p / "metrics/student.json").read_text())
    tok = AutoTokenizer.from_pretrained(p / "models/base")
    model = AutoModelForCausalLM.from_pretrained(p / "models/base")
    assert len(tok) == info["vocab_size"] <= 600
    assert sum(x.numel() for x in model.parameters()) == info["parameters"]
    assert model.config.hidden_size == 32 and model.config.num_hidden_layers == 1
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")


def test_training_and_evaluation(project: Project) -> None:
    p = project.path
    for name in ("base", "sft", "preference", "control", "grpo"):
        assert (p / f"models/{name}/model.safetensors").exists()
        assert (p / f"models/{name}/tokenizer.json").exists()
    curves = {name: _live_curves(p / "dvclive" / name) for name in ("sft", "preference", "control", "grpo")}
    for name, curve in curves.items():
        steps = json.loads((p / f"metrics/{name}.json").read_text())["steps"]
        assert sorted(curve) == list(range(1, steps + 1)) and all("loss" in e for e in curve.values()), name
        summary = json.loads((p / f"dvclive/{name}/metrics.json").read_text())
        assert summary["step"] == steps and summary["loss"] == curve[steps]["loss"]  # dvclive's summary: the last step
    assert all({"rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected"} <= set(e)
               for e in curves["preference"].values())
    # the control takes the preference stage's steps
    assert json.loads((p / "metrics/control.json").read_text())["steps"] == json.loads((p / "metrics/preference.json").read_text())["steps"]
    metrics = json.loads((p / "metrics/evaluate.json").read_text())
    assert len(curves["grpo"]) == 2 and all({"reward", "rewards/task_guard/mean", "rewards/all_constraints/mean"} <= set(e)
                                            for e in curves["grpo"].values())  # 8 instructions, 4 a step
    assert not any(set(e) & {"step_time", "train_runtime"} for c in curves.values() for e in c.values()), "a clock was logged"
    assert set(metrics) == {"base", "sft", "control", "preference", "grpo"}
    for m in metrics.values():
        assert set(m) == {"heldout", "ifeval", "ifbench"}
        assert m["ifeval"]["n_prompts"] == 541 and m["ifbench"]["n_prompts"] == 294
        # IFEval split by whether training saw the type; IFBench's types are never trained on
        assert m["ifeval"]["seen_instructions"] + m["ifeval"]["unseen_instructions"] == m["ifeval"]["n_instructions"]
        assert m["ifeval"]["seen_instructions"] > 0 and m["ifbench"]["seen_instructions"] == 0
        assert {"inst_strict_count", "inst_strict_format", "inst_strict_words"} <= set(m["ifbench"])
        for s in m.values():
            assert s["n_prompts"] > 0 and all(0.0 <= s[k] <= 1.0 for k in ("prompt_strict", "inst_strict", "prompt_loose", "inst_loose"))
            assert s["prompt_loose"] >= s["prompt_strict"]
    answers = read_jsonl(p / "data/eval/preference/heldout.jsonl")
    assert len(answers) == metrics["preference"]["heldout"]["n_prompts"]
    assert sum(a["follow_all_instructions"] for a in answers) / len(answers) == pytest.approx(metrics["preference"]["heldout"]["prompt_strict"], abs=1e-4)
    bars = json.loads((p / "plots/categories.json").read_text())
    assert bars and all(set(b) == {"category", "base", "sft", "control", "preference", "grpo"} for b in bars)
    project.run("ecd", "report", "--markdown", "report.md")
    report = (p / "report.md").read_text()  # the terminal's tables wrap to the width they are given
    assert "prompt_strict" in report and "IFEval" in report and "IFBench" in report and "| preference |" in report


def _plain_bootstrap(x: list[float], y: list[float], resamples: int, seed: int) -> tuple[float, float]:
    """A paired bootstrap of mean(x) − mean(y) written the plain way (indices drawn per resample)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    a, b = np.array(x), np.array(y)
    diffs = [float((a[idx] - b[idx]).mean()) for idx in (rng.integers(0, len(a), len(a)) for _ in range(resamples))]
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    return float(lo), float(hi)


def _live_curves(live: Path) -> dict[int, dict[str, float]]:
    """dvclive's per-metric TSV files (``plots/metrics/<name>.tsv``) as step → {metric: value}."""
    import csv

    base = live / "plots" / "metrics"
    out: dict[int, dict[str, float]] = {}
    for f in sorted(base.rglob("*.tsv")):
        name = f.relative_to(base).with_suffix("").as_posix()
        for row in csv.DictReader(f.open(), delimiter="\t"):
            assert set(row) == {"step", name.rsplit("/", 1)[-1]}, (f, row)  # no timestamp column
            out.setdefault(int(row["step"]), {})[name] = float(row[name.rsplit("/", 1)[-1]])
    return out


def test_training_curves_reach_dvc_through_dvclive(project: Project) -> None:
    """``dvc plots show --json`` draws the training curves from dvclive's files, ``dvc exp show``
    lists dvclive's summaries, and dvclive left ``dvc.yaml`` as the project wrote it."""
    plots = json.loads(project.run("dvc", "plots", "show", "--json").stdout)["data"]
    for title, files in (("SFT loss", {"sft"}), ("Preference and SFT-only control loss", {"preference", "control"}),
                         ("GRPO reward (the weighted sum) and each reward's mean", {"grpo"})):
        values = plots[title][0]["content"]["data"]["values"]
        curves = {name: _live_curves(project.path / "dvclive" / name) for name in files}
        assert len(values) == sum(len(c) for c in curves.values()) * (4 if "GRPO" in title else 1), title
    shown = project.run("dvc", "exp", "show", "--csv", "--no-pager").stdout.splitlines()[0]
    for name in ("sft", "preference", "control", "grpo"):
        assert f"dvclive/{name}/metrics.json:loss" in shown, name
    assert project.run("git", "diff", "--stat", "dvc.yaml").stdout == ""
    assert not (project.path / "dvclive" / "dvc.yaml").exists() and not (project.path / "dvclive" / "sft" / "dvc.yaml").exists()


def test_the_profile_estimate_bounds_what_the_run_did(project: Project) -> None:
    """``ecd.profiles.estimate`` on the run's own params: its call counts are upper bounds of what the
    stages counted, and close to them."""
    import sys

    script = ("import json, yaml\nfrom ecd.profiles import estimate\n"
              "print(json.dumps(estimate(yaml.safe_load(open('params.yaml')))))")
    e = json.loads(project.run(sys.executable, "-c", script).stdout)
    m = project.path / "metrics"
    rounds = sorted(p.name for p in (m / "rounds").iterdir() if p.name != "r0")
    calls = json.loads((m / "rounds/r0/sample.json").read_text())["calls"] + sum(
        json.loads((m / f"rounds/{r}/evolve.json").read_text())["teacher_calls"]
        + json.loads((m / f"rounds/{r}/sample.json").read_text())["calls"] for r in rounds)
    assert 0.8 * e["teacher_calls"] <= calls <= e["teacher_calls"], (calls, e)
    answered = sum(v["n_prompts"] for s in json.loads((m / "evaluate.json").read_text()).values() for v in s.values())
    assert 5 * (541 + 294) < answered <= e["eval_answers"], (answered, e)  # five students; held-out bounded


def test_intervals_agree_with_a_plain_bootstrap_of_the_answers(project: Project) -> None:
    """Every score and difference carries a 95 % interval in metrics/, in the report's tables, and
    the bounds agree with a paired bootstrap recomputed independently from data/eval/*/ifeval.jsonl."""
    p = project.path
    metrics = json.loads((p / "metrics/evaluate.json").read_text())
    compare = json.loads((p / "metrics/compare.json").read_text())
    verdicts = {m: [float(r["follow_all_instructions"]) for r in read_jsonl(p / f"data/eval/{m}/ifeval.jsonl")]
                for m in ("base", "sft", "control", "preference", "grpo")}
    for m, v in verdicts.items():
        s = metrics[m]["ifeval"]
        assert s["prompt_strict"] == pytest.approx(sum(v) / len(v), abs=1e-4)
        assert s["prompt_strict_lo"] <= s["prompt_strict"] <= s["prompt_strict_hi"]
        assert s["prompt_set"] == metrics["base"]["ifeval"]["prompt_set"]
    for pair in ("preference-control", "preference-base", "control-base", "grpo-control", "grpo-preference"):
        a, b = pair.split("-")
        d = compare["ifeval"][pair]["prompt_strict"]
        assert d["delta"] == pytest.approx(metrics[a]["ifeval"]["prompt_strict"] - metrics[b]["ifeval"]["prompt_strict"], abs=2e-4)
        lo, hi = _plain_bootstrap(verdicts[a], verdicts[b], 4000, seed=11)
        # two Monte Carlo estimates of the same quantiles (10,000 and 4,000 draws): within their error
        assert d["lo"] == pytest.approx(lo, abs=0.008) and d["hi"] == pytest.approx(hi, abs=0.008)
        discordant = sum(x != y for x, y in zip(verdicts[a], verdicts[b])) / len(verdicts[a])
        assert 0.0 <= d["p"] <= 1.0 and d["mde"] == pytest.approx(2.8016 * (discordant / len(verdicts[a])) ** 0.5, abs=2e-4)
    project.run("ecd", "report", "--no-experiments", "--markdown", "intervals.md")
    report = (p / "intervals.md").read_text()  # the terminal's table wraps its cells to the width it is given
    s = metrics["preference"]["ifeval"]
    assert f"{s['prompt_strict']:.3f} [{s['prompt_strict_lo']:.3f}, {s['prompt_strict_hi']:.3f}]" in report
    d = compare["ifeval"]["preference-control"]["prompt_strict"]
    assert f"{d['delta']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]" in report
    scores = json.loads((p / "plots/scores.json").read_text())
    assert {(r["set"], r["student"]) for r in scores} == {(s_, m) for s_ in ("heldout", "ifeval", "ifbench") for m in verdicts}


def test_a_pair_experiment_never_resplits_or_retrains_the_student(project: Project) -> None:
    """``pair.seed`` (any pair.* key) is downstream of the split: ``dvc status`` lists the pair
    stage and what follows, never split, student or SFT."""
    params = (project.path / "params.yaml").read_text()
    try:
        project.params({"pair": {"seed": 1}})
        changed = set(json.loads(project.run("dvc", "status", "--json").stdout))
        assert "pair" in changed
        assert not changed & {"split", "student", "sft", "seeds", "sample_r0", "verify_r0"}
    finally:
        (project.path / "params.yaml").write_text(params)


def test_second_repro_does_nothing(project: Project) -> None:
    out = project.run("dvc", "repro").stdout
    assert "Data and pipelines are up to date" in out
    assert "up to date" in project.run("dvc", "status").stdout


def test_results_travel_to_a_second_clone_through_the_run_cache(project: Project, tmp_path: Path) -> None:
    """A second machine that pulls the run-cache restores every stage instead of running it, and a
    stage run again gives the same dvc.lock (no wall-clock times in any output)."""
    remote = tmp_path / "travel-remote"
    project.run("dvc", "remote", "add", "travel", str(remote))
    project.run("dvc", "push", "--run-cache", "-r", "travel")
    clone = tmp_path / "second-machine"
    project.run("git", "clone", "-q", str(project.path), str(clone))  # the committed params, no dvc.lock
    other = Project(clone)
    other.run("dvc", "remote", "add", "-d", "travel", str(remote))
    other.run("dvc", "pull", "--run-cache", check=False)  # the run-cache; outputs come with --pull below
    out = other.run("dvc", "repro", "--pull").stdout
    stages = set(re.findall(r"Stage '([^']+)' is cached - skipping run", out))
    locked = set(yaml.safe_load((project.path / "dvc.lock").read_text())["stages"])
    print(f"second clone: {len(stages)} of {len(locked)} stages restored from the run-cache, {len(_ran(out))} run")
    assert _ran(out) == set(), f"stages ran on the second clone: {_ran(out)}"
    assert stages == locked, f"restored {sorted(stages)} of {sorted(locked)}"
    assert (clone / "dvc.lock").read_text() == (project.path / "dvc.lock").read_text()
    # the same stage run again (forced) writes the same outputs and metrics: an identical dvc.lock
    other.run("dvc", "repro", "-f", "-s", "sft")
    assert (clone / "dvc.lock").read_text() == (project.path / "dvc.lock").read_text()


def _ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def test_experiment_reruns_only_downstream(project: Project) -> None:
    project.commit("first run")
    out = project.run("dvc", "exp", "run", "--temp", "-n", "evolve-seed-1", "-S", "evolve.seed=1").stdout
    ran = _ran(out)
    assert {"evolve@r1", "pair", "sft", "train", "control", "evaluate"} <= ran
    assert not ran & {"seeds", "sample_r0", "verify_r0"}
    out = project.run("dvc", "exp", "run", "--temp", "-n", "pairs-random", "-S", "pair.strategy=[random]").stdout
    ran = _ran(out)  # matched rows: only the negatives change, so the one control and the one GRPO run are reused
    assert {"pair", "train", "evaluate"} <= ran and not ran & {"evolve@r1", "split", "student", "sft", "control", "grpo"}
    out = project.run("dvc", "exp", "run", "--temp", "-n", "pairs-model_gap", "-S", "pair.strategy=[model_gap]",
                      "-S", "pair.match=[]").stdout
    ran = _ran(out)  # a strategy on its own rows: a control and GRPO of its own, still the data half, student and SFT reused
    assert {"pair", "train", "control", "grpo", "evaluate"} <= ran and not ran & {"evolve@r1", "student", "sft"}
    # a study's run other than ECD's (ecd.study.OWN_SETS): no GRPO, its own student alone evaluated
    sets = [a for s in OWN_SETS["random"] for a in ("-S", s)]
    out = project.run("dvc", "exp", "run", "--temp", "-n", "own-student", "-S", "pair.strategy=[random]", *sets).stdout
    assert _ran(out) == {"grpo", "evaluate"}, _ran(out)
    assert "grpo: not run (train.grpo.enabled: false)" in out
    script = ("import json, sys\nfrom ecd.grid import exp_rows, exp_show\nfrom ecd.seed_runs import read_at\n"
              "rev = next(r['rev'] for r in exp_rows(exp_show()) if r.get('name') == 'own-student')\n"
              "print(json.dumps({p: json.loads(read_at(rev, p)) for p in ('metrics/evaluate.json', 'metrics/grpo.json')}))")
    own = json.loads(project.run(sys.executable, "-c", script).stdout.strip().splitlines()[-1])
    assert list(own["metrics/evaluate.json"]) == ["preference"] and own["metrics/grpo.json"] == {"enabled": False}
    shown = json.loads(project.run("dvc", "exp", "show", "--json").stdout)
    text = json.dumps(shown)
    assert all(name in text for name in ("evolve-seed-1", "pairs-random", "pairs-model_gap"))
    assert "prompt_strict" in text
    md = project.run("dvc", "exp", "show", "--md").stdout
    assert "pairs-model_gap" in md
    diff = json.loads(project.run("dvc", "metrics", "diff", "HEAD", "pairs-random", "--json").stdout)
    pair_diff = diff["metrics/pair.json"]  # (the tiny student's scores may not move: unchanged metrics are not listed)
    assert pair_diff["pairs_by_strategy.random"]["new"] > 0 and pair_diff["pairs_by_strategy.random"]["old"] is None


def test_outputs_of_an_experiment_read_from_the_cache_as_dvc_reads_them(project: Project) -> None:
    """``ecd.seed_runs.read_at`` takes a file's hash from the experiment's dvc.lock and its bytes from
    the local cache: the same bytes as DVC's own filesystem gives, and the same missing file; a study
    record written from a real experiment (``ecd.study.record``) gives the verdicts its cache gives."""
    import sys

    script = (
        "from dvc.api import DVCFileSystem\n"
        "from ecd.grid import exp_rows, exp_show\n"
        "from ecd.seed_runs import _cache_path, read_at\n"
        "rows = [r for r in exp_rows(exp_show()) if r['state'] == 'success']\n"
        "assert rows, 'no experiment'\n"
        "for r in rows:\n"
        "    for path in ('data/eval/preference/ifeval.jsonl', 'data/pairs/train.parquet', 'metrics/pair.json'):\n"
        "        assert _cache_path(r['rev'], path) is not None, path\n"
        "        assert read_at(r['rev'], path) == DVCFileSystem('.', rev=r['rev']).read_bytes(path), path\n"
        "    try:\n"
        "        read_at(r['rev'], 'data/eval/nobody/ifeval.jsonl')\n"
        "    except FileNotFoundError:\n"
        "        pass\n"
        "    else:\n"
        "        raise AssertionError('a missing file was read')\n"
        "import tempfile\n"
        "from pathlib import Path\n"
        "from ecd.seed_runs import read_verdicts\n"
        "from ecd.study import holds, read_record, record\n"
        "full = next(r for r in rows if all(holds(r, m) for m in ('base', 'control', 'preference', 'grpo')))\n"
        "path = record('demo', {**full, 'name': 'demo-ecd-rpo-s0'}, Path(tempfile.mkdtemp()))\n"
        "for m in ('base', 'control', 'preference', 'grpo'):\n"
        "    for s in ('heldout', 'ifeval', 'ifbench'):\n"
        "        a, b = read_record(path, m, s), read_verdicts(full['rev'], m, s)\n"
        "        assert a.keys == b.keys and len(a) > 0, (m, s)\n"
        "        assert all((a.follow_all[k] == b.follow_all[k]).all() and (a.followed[k] == b.followed[k]).all()\n"
        "                   for k in ('strict', 'loose')), (m, s)\n"
        "print(len(rows), 'experiments')\n")
    out = project.run(sys.executable, "-c", script).stdout
    assert re.fullmatch(r"\d+ experiments\n", out) and int(out.split()[0]) >= 3, out


def test_report_writes_charts_and_the_experiments_headline_offline(project: Project) -> None:
    """``ecd report --html`` renders DVC's plots to SVG and PNG and one page with no external
    resource; with experiments in the repo it prints their headline numbers, the same columns that
    the documented ``dvc exp show`` invocation keeps."""
    from ecd.report_tables import HEADLINE_DVC_ARGS

    p = project.path
    out = project.run("ecd", "report", "--markdown", "report.md", "--html", "report.html").stdout
    charts = json.loads(project.run("dvc", "plots", "show", "--json").stdout)["data"]
    assert len(charts) == len(yaml.safe_load((p / "dvc.yaml").read_text())["plots"])  # each plot of dvc.yaml once
    svgs, pngs = sorted((p / "report-charts").glob("*.svg")), sorted((p / "report-charts").glob("*.png"))
    margins = [f for f in svgs if f.name.startswith("preference-minus-control-over-seeds")]
    assert len(margins) == 3  # one per evaluation set: the settings over seeds with their intervals
    assert len(svgs) == len(pngs) == len(charts) + len(margins)
    assert all(f.read_text().lstrip().startswith("<svg") and "<path" in f.read_text() for f in svgs)
    assert all(f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f.stat().st_size > 5000 for f in pngs)
    page = (p / "report.html").read_text()
    assert not _loads_something(page), "the page loads something"
    assert "vegaEmbed" in page and page.count('class="chart"') == len(charts) + len(margins)
    md = (p / "report.md").read_text()
    assert "![SFT loss](report-charts/sft-loss.svg)" in md and "### Yield per round" in md
    assert "paired differences, 95 % intervals" in md and "Settings over seeds" in md
    # the experiments of test_experiment_reruns_only_downstream, with what each changed
    assert "Experiments: prompt-level strict" in out
    assert "| pairs-random |" in md and "pair.strategy=[\"random\"]" in md and "evolve.seed=1" in md
    shown = project.run(*HEADLINE_DVC_ARGS, "--md").stdout
    header = shown.splitlines()[0]
    assert "preference.ifeval.prompt_strict" in header and "control.heldout.prompt_strict" in header
    assert header.count("|") - 1 == 10, header  # Experiment and the nine headline columns, nothing else
    assert "pairs-random" in shown


def test_report_draws_in_a_real_browser(project: Project, tmp_path: Path) -> None:
    """Headless Chromium opens the HTML report from disk with the network closed: every chart is
    drawn as SVG marks and the screenshot is not blank."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (`make test` installs it: apt-get install chromium)")
    from PIL import Image

    page = project.path / "report.html"
    if not page.exists():
        project.run("ecd", "report", "--html", "report.html", "--no-experiments")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--virtual-time-budget=10000"]
    dom = subprocess.run([chromium, *flags, f"--user-data-dir={tmp_path / 'profile-dom'}", "--dump-dom",
                          page.as_uri()], capture_output=True, text=True, timeout=180).stdout
    n_charts = page.read_text().count('class="chart"')
    drawn = re.findall(r'<div class="chart[^"]*" id="chart-\d+"[^>]*>(.*?)</div>\s*</figure>', dom, re.S)
    assert len(drawn) == n_charts >= 7  # dvc.yaml's seven, and the seed margins where experiments ran
    assert all('<svg' in d and 'class="marks"' in d for d in drawn), "a chart did not draw"
    headline = re.search(r'<figcaption>Students, prompt-level strict with 95 % intervals</figcaption>\s*'
                         r'<div class="chart[^"]*" id="chart-\d+"[^>]*>(.*?)</div>\s*</figure>', dom, re.S)
    assert headline, "the headline chart is missing"
    assert headline.group(1).count('aria-roledescription="bar"') >= 12  # four students on three sets
    assert "mark-rule" in headline.group(1), "the headline chart drew no error bars"
    assert "chart failed:" not in "".join(drawn)
    shot = tmp_path / "report.png"
    subprocess.run([chromium, *flags, f"--user-data-dir={tmp_path / 'profile-shot'}", "--window-size=1200,12000",
                    f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=180, check=True)
    image = Image.open(shot).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    ink = sum(n for n, c in colours if c != (255, 255, 255)) / (image.width * image.height)
    chart_colours = {c for n, c in colours if n > 50 and max(c) - min(c) > 60}  # saturated: lines and bars
    print(f"screenshot {image.width}x{image.height}: {ink:.1%} not white, {len(chart_colours)} saturated colours")
    assert ink > 0.02 and len(chart_colours) >= 2


def test_push_and_pull_reproduce_pairs(project: Project, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    project.run("dvc", "remote", "add", "-d", "local", str(remote))
    project.commit("remote")
    project.run("dvc", "push")
    clone = tmp_path / "clone"
    project.run("git", "clone", "-q", str(project.path), str(clone))
    other = Project(clone)
    other.run("dvc", "pull")
    for f in ("train.parquet", "test.parquet", "README.md"):
        assert (clone / "data/pairs" / f).read_bytes() == (project.path / "data/pairs" / f).read_bytes()
    assert "up to date" in other.run("dvc", "status").stdout
