"""The study: does a way of building pairs make a better student? Arms on matched rows over seeds.

A study is the grid's RPO cells for every pair strategy (``ecd``, ``random``, ``model_gap``; and
``seed_answer``, an extra arm, where asked: it pairs the rows the others match), under a
params profile, one DVC experiment per strategy and seed, named ``<profile>-<strategy>-rpo-s<seed>``,
and one GRPO run a seed (``<profile>-grpo-rpo-s<seed>``). Each strategy pairs the same rows
(``pair.match``), so one seed's runs share their untrained model, their SFT-only control and their
GRPO run (the ``control`` and ``grpo`` stages read the rows, not the negatives): the ECD run evaluates
the untrained model and the control with its own student, the other strategies' runs their own
student alone, the GRPO run GRPO alone (:data:`OWN_SETS`), so that every run is one unit of about an
hour or less and none makes another's arms again. ``run`` runs what has not finished, one
experiment at a time; a stopped study resumes from DVC's run-cache and the call cache. After each
run it writes the run's record (:func:`record`): the per-prompt verdicts of the students the study
reads from it, small enough to commit, so that the evidence behind a study's table travels with the
code and a study can be pooled over machines and sittings that share nothing but git.
:func:`summarise` reads every finished run's per-prompt verdicts (from DVC's cache, else from its
record) and gives each arm against the control and against ECD on every set, seeds pooled
(:func:`ecd.uncertainty.seed_interval`), with the smallest effect the study could detect.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecd.errors import EcdError
from ecd.grid import experiments, exp_rows, exp_show
from ecd.params import PAIR_STRATEGIES
from ecd.seed_runs import VerdictReader, read_records_at, read_verdicts
from ecd.uncertainty import Z_ALPHA, Z_POWER, Verdicts, seed_interval

#: the study's arms: name → where it is found, the first that holds it of (the run, the student in that
#: run); a run is named for its strategy, ``grpo`` (GRPO on the seed's rows, alone) or ``noguard``: GRPO
#: with its task guard weighted 0 (the guard's ablation). Runs made before GRPO ran alone hold it in
#: their ECD run, which the second place of ``grpo`` reads.
ARMS: dict[str, tuple[tuple[str, str], ...]] = {
    "untrained": (("ecd", "base"),),
    "control": (("ecd", "control"),),
    "ecd": (("ecd", "preference"),),
    "random": (("random", "preference"),),
    "model_gap": (("model_gap", "preference"),),
    "seed_answer": (("seed_answer", "preference"),),
    "grpo": (("grpo", "grpo"), ("ecd", "grpo")),
    "grpo_noguard": (("noguard", "grpo"),),
}
#: the runs of a seed, in the order they run: each unit about an hour or less of the 2 cores, so that a
#: sitting that ends loses at most one
RUNS = (*PAIR_STRATEGIES, "grpo", "noguard")
#: each run's overrides beyond its strategy's cell: the ECD run trains no GRPO and evaluates the arms
#: every strategy shares (the untrained model, the control) with its own; the other strategies their
#: own student alone; the GRPO run its GRPO student alone (on ECD's cell, whose preference training DVC's
#: run-cache restores); the guard's ablation GRPO without the guard. So a machine that lacks a seed's
#: other runs (a fresh one, pooling with records from elsewhere) makes nothing of theirs again.
OWN_SETS: dict[str, list[str]] = {
    "ecd": ["train.grpo.enabled=false", "evaluate.students=[base,control,preference]"],
    "random": ["train.grpo.enabled=false", "evaluate.students=[preference]"],
    "model_gap": ["train.grpo.enabled=false", "evaluate.students=[preference]"],
    "seed_answer": ["train.grpo.enabled=false", "evaluate.students=[preference]"],
    "grpo": ["evaluate.students=[grpo]"],
    "noguard": ["train.grpo.reward_weights.task_guard=0", "evaluate.students=[grpo]"],
}
#: what each arm is compared with: every arm against the SFT-only control, the others against ECD
COMPARISONS: tuple[tuple[str, str], ...] = (
    ("untrained", "control"), ("ecd", "control"), ("random", "control"), ("model_gap", "control"), ("grpo", "control"),
    ("seed_answer", "control"), ("random", "ecd"), ("model_gap", "ecd"), ("seed_answer", "ecd"), ("grpo", "ecd"),
    ("grpo", "grpo_noguard"),
)
#: (set, mode) columns: prompt level on every set, and IFBench's headline, loose
COLUMNS: tuple[tuple[str, str], ...] = (("heldout", "strict"), ("ifeval", "strict"), ("ifbench", "strict"), ("ifbench", "loose"))
#: where run records are written and read: ``<RECORDS>/<profile>/<experiment>.jsonl``
RECORDS = Path("docs/study")
#: a record's rev: this prefix and the record's path, so that a record reads like an experiment
RECORD_REV = "record:"


def run_name(profile: str, strategy: str, seed: int) -> str:
    return f"{profile}-{strategy}-rpo-s{seed}"


def seed_of(name: str) -> int | None:
    """The seed of a study run's name (``…-rpo-s<seed>``), or None for a name that is not one."""
    tail = name.rsplit("-s", 1)[-1]
    return int(tail) if "-s" in name and tail.isdigit() else None


def plan(profile: str, seeds: list[int], strategies: list[str], guard_ablation: list[int] | None = None,
         grpo: bool = True) -> list[tuple[str, list[str]]]:
    """(experiment name, ``-S`` overrides) in the order they run: seed by seed, ECD first, then the
    other strategies, then GRPO (:data:`RUNS`), so that a stopped study has whole seeds and the arms
    every run of a seed shares come with its first; a seed of ``guard_ablation`` ends with GRPO
    without its task guard. ``grpo`` false leaves out both GRPO runs (the pair strategies' arms over
    every seed first, GRPO, the longest run of a seed, in a later call)."""
    cells = {name: sets for name, sets in experiments(strategies, ["rpo"], seeds)}
    out = []
    for seed in seeds:
        out += [(run_name(profile, s, seed), cells[f"{s}-rpo-s{seed}"] + OWN_SETS[s]) for s in strategies]
        if not grpo:
            continue
        out.append((run_name(profile, "grpo", seed), cells[f"ecd-rpo-s{seed}"] + OWN_SETS["grpo"]))
        if seed in (guard_ablation or []):
            out.append((run_name(profile, "noguard", seed), cells[f"ecd-rpo-s{seed}"] + OWN_SETS["noguard"]))
    return out


def holds(row: dict[str, Any], student: str) -> bool:
    """Whether a finished run evaluated ``student``: a record's header says; an experiment's
    ``evaluate.students`` (every student where the param is absent: runs made before it)."""
    if "students" in row:
        return student in row["students"]
    chosen = (row.get("params") or {}).get("evaluate.students")
    return chosen is None or student in chosen


def arm_source(runs: dict[str, dict[str, Any]], arm: str) -> tuple[dict[str, Any], str] | None:
    """The run (of ``runs``, one seed's by run kind) and the student that hold ``arm``, or None."""
    for kind, student in ARMS[arm]:
        if kind in runs and holds(runs[kind], student):
            return runs[kind], student
    return None


def finished(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The finished experiments by name (the newest where a name ran at several commits)."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r.get("state") == "success" and r.get("name"):
            out.setdefault(str(r["name"]), r)
    return out


def run(profile: str, seeds: list[int], strategies: list[str], extra: list[str], guard_ablation: list[int] | None = None,
        records: Path = RECORDS, grpo: bool = True) -> list[str]:
    """Run every experiment of the study that has not finished (as a DVC experiment or as a record
    in ``records``), in :func:`plan`'s order, each as ``ecd profile run`` does (``dvc exp run --temp``
    with the profile's params), and write each finished run's record; returns the names run. A
    failed run stops the study with its name."""
    from ecd.profiles import run as run_profile

    if "ecd" not in strategies:
        raise EcdError("a study compares with ECD's pairs: --strategies must include ecd")
    done = finished(exp_rows(exp_show()))
    kept = {r["name"]: r for r in record_rows(profile, records)}
    for name in sorted(set(done) - set(kept)):  # a run finished before its record was written
        if name.startswith(f"{profile}-"):
            record(profile, done[name], records)
    recorded = set(kept)
    ran = []
    todo = pending(profile, plan(profile, seeds, strategies, guard_ablation, grpo), kept | done)
    for i, (name, sets) in enumerate(todo, 1):
        print(f"study: {name} ({i} of {len(todo)}; {len(done | dict.fromkeys(recorded))} finished before)", flush=True)
        if run_profile(profile, name, [*sets, *extra]) != 0:
            raise EcdError(f"study: experiment {name} failed; fix the cause and run the study again (finished runs are kept)")
        path = record(profile, finished(exp_rows(exp_show()))[name], records)
        print(f"study: {name} recorded in {path} (commit it to keep the evidence)", flush=True)
        ran.append(name)
    return ran


def pending(profile: str, steps: list[tuple[str, list[str]]], have: dict[str, dict[str, Any]]
            ) -> list[tuple[str, list[str]]]:
    """The steps of :func:`plan` still to run: not finished (``have``: finished runs and records by
    name), and not a GRPO run whose arm its seed's ECD run holds (a run made before GRPO ran alone)."""
    def needed(name: str) -> bool:
        seed = seed_of(name)
        if name in have or seed is None:
            return name not in have
        ecd = have.get(run_name(profile, "ecd", seed))
        return not (name == run_name(profile, "grpo", seed) and ecd is not None and holds(ecd, "grpo"))

    return [(n, s) for n, s in steps if needed(n)]


def _strategy(name: str) -> str:
    return name.rsplit("-rpo-s", 1)[0].split("-", 1)[1]


def record(profile: str, row: dict[str, Any], records: Path = RECORDS, read: Any = read_records_at) -> Path:
    """Write the finished run ``row``'s record, ``<records>/<profile>/<name>.jsonl``, and return its path.

    A header line (the run, the commit it derives from, its params, the machine that wrote it), then
    one line per evaluation set: the prompts' keys and constraint ids once, and for each student the
    study reads from this run (:data:`ARMS`) its verdict per instruction, strict and loose, as a
    string per prompt (``1`` followed, ``0`` not, ``-`` not scored). That is all the report needs; the
    answers stay in DVC's cache."""
    name = str(row["name"])
    rev = str(row.get("rev") or name)
    students = sorted({student for places in ARMS.values() for kind, student in places
                       if kind == _strategy(name) and holds(row, student)})
    if not students:
        raise EcdError(f"{name}: the run holds none of the study's arms (its evaluate.students)")
    lines = [{"experiment": name, "profile": profile, "rev": rev, "baseline": _baseline_commit(rev),
              "params": {k: v for k, v in sorted((row.get("params") or {}).items()) if v != (row.get("baseline") or {}).get(k)},
              "machine": f"{platform.machine()}, {platform.processor() or platform.system()}, {_cpus()} CPUs",
              "students": students}]
    for set_name in sorted({s for s, _ in COLUMNS}):
        by_student = {m: read(rev, m, set_name) for m in students}
        first = by_student[students[0]]
        keys = [str(r["key"]) for r in first]
        for m, recs in by_student.items():
            if [str(r["key"]) for r in recs] != keys:
                raise EcdError(f"{name}: {m} and {students[0]} answered different {set_name} prompts")
        lines.append({"set": set_name, "keys": keys, "instruction_id_list": [r["instruction_id_list"] for r in first],
                      "students": {m: {mode: [_encode(r.get(field, r["follow_instruction_list"])) for r in recs]
                                       for mode, field in (("strict", "follow_instruction_list"),
                                                           ("loose", "follow_instruction_list_loose"))}
                                   for m, recs in by_student.items()}})
    from ecd.records import write_text

    path = records / profile / f"{name}.jsonl"
    write_text(path, "".join(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n" for line in lines))
    return path


def _encode(follow: list[bool | None]) -> str:
    return "".join("-" if f is None else "1" if f else "0" for f in follow)


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _baseline_commit(rev: str) -> str | None:
    """The commit an experiment derives from (its commit's parent), or None outside git."""
    import subprocess

    proc = subprocess.run(["git", "rev-parse", f"{rev}^"], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def record_rows(profile: str, records: Path = RECORDS) -> list[dict[str, Any]]:
    """The study's runs kept as records, as finished-experiment rows whose rev names the record, with
    the students its header lists."""
    from ecd.records import read_text

    rows = []
    for p in sorted((records / profile).glob("*.jsonl")):
        try:
            students = list(json.loads(read_text(p).split("\n", 1)[0])["students"])
        except (ValueError, KeyError, TypeError) as exc:
            raise EcdError(f"{p}:1: not a study record's header ({exc})") from exc
        rows.append({"name": p.stem, "state": "success", "rev": f"{RECORD_REV}{p}", "students": students})
    return rows


def read_record(path: Path, student: str, set_name: str) -> Verdicts:
    """One student's verdicts on one set from a run's record (:func:`record`); a malformed record
    names its file and line."""
    from ecd.records import read_text

    for no, line in enumerate(read_text(path).splitlines(), 1):
        try:
            item = json.loads(line)
            if item.get("set") != set_name:
                continue
            marks = item["students"][student]
            results = [{"key": k, "instruction_id_list": ids,
                        "follow_instruction_list": _decode(strict), "follow_instruction_list_loose": _decode(loose)}
                       for k, ids, strict, loose in zip(item["keys"], item["instruction_id_list"], marks["strict"],
                                                        marks["loose"], strict=True)]
        except (ValueError, KeyError, TypeError) as exc:
            raise EcdError(f"{path}:{no}: not a study record line for {student} on {set_name} ({exc})") from exc
        return Verdicts.from_results(results)
    raise EcdError(f"{path}: no {set_name} verdicts")


def _decode(marks: str) -> list[bool | None]:
    return [None if c == "-" else c == "1" for c in marks]


def read_any(rev: str, student: str, set_name: str) -> Verdicts:
    """Verdicts from a record (a rev from :func:`record_rows`) or from DVC's cache."""
    if rev.startswith(RECORD_REV):
        return read_record(Path(rev[len(RECORD_REV):]), student, set_name)
    return read_verdicts(rev, student, set_name)


def study_rows(profile: str, records: Path = RECORDS) -> list[dict[str, Any]]:
    """Every finished run of the study: DVC's experiments, and the records of runs not among them
    (runs made on another machine or in an earlier sitting whose cache is gone)."""
    rows = exp_rows(exp_show())
    done = finished(rows)
    return rows + [r for r in record_rows(profile, records) if r["name"] not in done]


@dataclass
class Cell:
    """One comparison on one set over the seeds that finished both arms."""

    delta: float
    lo: float
    hi: float
    mde: float
    seeds: list[int]


@dataclass
class Study:
    """The finished runs' arms: scores per arm and column, and every comparison's cell."""

    profile: str
    seeds: list[int]
    scores: dict[str, dict[tuple[str, str], list[float]]] = field(default_factory=dict)
    cells: dict[tuple[str, str], dict[tuple[str, str], Cell]] = field(default_factory=dict)
    prompts: dict[str, list[int]] = field(default_factory=dict)


def runs_of_seed(done: dict[str, dict[str, Any]], profile: str, seed: int) -> dict[str, dict[str, Any]]:
    return {s: done[run_name(profile, s, seed)] for s in RUNS if run_name(profile, s, seed) in done}


def summarise(rows: list[dict[str, Any]], profile: str, read: VerdictReader = read_any,
              resamples: int = 25_000, seed: int = 0) -> Study:
    """Every arm's scores and every comparison of :data:`COMPARISONS` from the finished runs of
    ``profile``'s study: a comparison pools the seeds whose runs hold both arms; each seed's two
    students answered the same prompts (checked), the seeds' held-out prompts may differ."""
    done = finished(rows)
    named = {s for n in done if (s := seed_of(n)) is not None}
    seeds = sorted(s for s in named if runs_of_seed(done, profile, s))
    study = Study(profile, seeds)
    verdicts: dict[tuple[int, str, str], Any] = {}
    by_seed = {s: runs_of_seed(done, profile, s) for s in seeds}

    def arm_verdicts(s: int, arm: str, set_name: str) -> Any:
        source = arm_source(by_seed[s], arm)
        if source is None:
            return None
        run, student = source
        key = (s, arm, set_name)
        if key not in verdicts:
            verdicts[key] = read(str(run.get("rev") or run["name"]), student, set_name)
        return verdicts[key]

    for set_name, mode in COLUMNS:
        for arm in ARMS:
            for s in seeds:
                v = arm_verdicts(s, arm, set_name)
                if v is not None:
                    study.scores.setdefault(arm, {}).setdefault((set_name, mode), []).append(float(v.follow_all[mode].mean()))
                    if arm == "control" and mode == "strict":
                        study.prompts.setdefault(set_name, []).append(len(v))
        for a, b in COMPARISONS:
            diffs, used = [], []
            for s in seeds:
                va, vb = arm_verdicts(s, a, set_name), arm_verdicts(s, b, set_name)
                if va is None or vb is None:
                    continue
                if va.keys != vb.keys:
                    raise EcdError(f"seed {s}: {a} and {b} were scored on different {set_name} prompts")
                diffs.append(va.follow_all[mode].astype(float) - vb.follow_all[mode].astype(float))
                used.append(s)
            if not diffs:
                continue
            shared = len({len(d) for d in diffs}) == 1 and set_name != "heldout"
            ci = seed_interval(diffs, resamples, seed, shared_prompts=shared)
            se = (ci["hi"] - ci["lo"]) / (2 * Z_ALPHA)
            study.cells.setdefault((a, b), {})[(set_name, mode)] = Cell(ci["delta"], ci["lo"], ci["hi"],
                                                                         (Z_ALPHA + Z_POWER) * se, used)
    if not study.cells:
        raise EcdError(f"no finished runs of a {profile} study (experiments named {run_name(profile, 'ecd', 0)} and kin)")
    return study
