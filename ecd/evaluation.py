"""Evaluation: students answer held-out instructions; the constraint library scores the answers.

Scores follow IFEval's definitions: prompt-level accuracy (every instruction of a prompt followed)
and instruction-level accuracy (the fraction of all instructions followed), each strict and loose.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from ecd import constraints as C
from ecd.constraints import clean_kwargs, follow_list
from ecd.backends import Request, TransformersBackend, generate_cached
from ecd.errors import EcdError
from ecd.layout import DAVINCI_003, IFBENCH_INPUT, IFBENCH_SHA256, IFEVAL_INPUT, IFEVAL_SHA256, USER_ORIENTED
from ecd.params import EvaluateParams, ModelParams, Params
from ecd.records import iter_jsonl, write_jsonl
from ecd.schema import EvalRecord, Pair, user
from ecd.seeds import with_input

TEMPLATE_VERSION = "evaluate-v1"


def score(items: list[dict[str, Any]]) -> tuple[dict[str, float | int | str], dict[str, list[dict[str, Any]]]]:
    """Score ``{"prompt", "response", "instruction_id_list", "kwargs"}`` items.

    Returns (summary, per-prompt results for ``strict`` and ``loose`` in IFEval's output format).
    A prompt with an instruction that could not be scored (``None`` in its list) is left out of
    every metric and counted in ``unscored_prompts``, its types named in ``unscored_types``.
    """
    results: dict[str, list[dict[str, Any]]] = {"strict": [], "loose": []}
    summary: dict[str, float | int | str] = {}
    by_group: dict[str, list[bool]] = defaultdict(list)
    unscored: set[str] = set()
    for mode in ("strict", "loose"):
        n_prompts = n_follow_all = n_inst = n_inst_follow = n_unscored = 0
        for it in items:
            follow = follow_list(it["response"], it["instruction_id_list"], it["kwargs"], loose=mode == "loose")
            scored = None not in follow
            results[mode].append(
                {  # IFEval's output record, fields in its order
                    "instruction_id_list": it["instruction_id_list"],
                    "prompt": it["prompt"],
                    "response": it["response"],
                    "follow_all_instructions": all(follow) if scored else None,
                    "follow_instruction_list": follow,
                }
            )
            if not scored:
                n_unscored += 1
                unscored |= {i for i, f in zip(it["instruction_id_list"], follow) if f is None}
                continue
            n_prompts += 1
            n_follow_all += all(follow)
            n_inst += len(follow)
            n_inst_follow += sum(map(bool, follow))
            if mode == "strict":
                for i, f in zip(it["instruction_id_list"], follow):
                    by_group[C.get(i).group].append(bool(f))
        summary[f"prompt_{mode}"] = n_follow_all / max(n_prompts, 1)
        summary[f"inst_{mode}"] = n_inst_follow / max(n_inst, 1)
        summary["n_prompts"], summary["n_instructions"] = n_prompts, n_inst
        if n_unscored:
            summary["unscored_prompts"], summary["unscored_types"] = n_unscored, ",".join(sorted(unscored))
    for group, fs in sorted(by_group.items()):
        summary[f"inst_strict_{group}"] = sum(fs) / len(fs)
    return summary, results


def seen_split(records: list[EvalRecord], trained: set[str]) -> dict[str, float | int]:
    """Instruction-level strict accuracy apart for the constraint types the student's training
    pairs contained (``seen_*``) and the others (``unseen_*``): the cheapest generalisation signal.
    Prompt level too: a prompt is seen when every one of its types was trained on."""
    out: dict[str, float | int] = {}
    inst: dict[str, list[bool]] = {"seen": [], "unseen": []}
    prompts: dict[str, list[bool]] = {"seen": [], "unseen": []}
    for r in records:
        if None in r["follow_instruction_list"]:
            continue
        for type_id, ok in zip(r["instruction_id_list"], r["follow_instruction_list"]):
            inst["seen" if type_id in trained else "unseen"].append(bool(ok))
        side = "seen" if all(t in trained for t in r["instruction_id_list"]) else "unseen"
        prompts[side].append(bool(r["follow_all_instructions"]))
    for side in ("seen", "unseen"):
        out[f"{side}_instructions"], out[f"{side}_prompts"] = len(inst[side]), len(prompts[side])
        if inst[side]:
            out[f"{side}_inst_strict"] = sum(inst[side]) / len(inst[side])
        if prompts[side]:
            out[f"{side}_prompt_strict"] = sum(prompts[side]) / len(prompts[side])
    return out


def scored_records(prompts: list[dict[str, Any]], results: dict[str, list[dict[str, Any]]]) -> list[EvalRecord]:
    """The per-prompt records an evaluation keeps: IFEval's strict result record with the prompt's
    ``key`` and its loose verdicts beside the strict ones, so that every metric's interval can be
    recomputed from the file alone."""
    return [cast(EvalRecord, {"key": str(p["key"]), **strict,
                              "follow_all_instructions_loose": loose["follow_all_instructions"],
                              "follow_instruction_list_loose": loose["follow_instruction_list"]})
            for p, strict, loose in zip(prompts, results["strict"], results["loose"])]


def prompt_set_id(prompts: list[dict[str, Any]]) -> str:
    """A short content id of an evaluation set's prompts: two runs scored on different prompts
    (another held-out split, a limit) are never compared as if they were paired."""
    from ecd.records import content_id

    return content_id([[p["prompt"], p["instruction_id_list"]] for p in prompts], length=12)


@dataclass(frozen=True)
class Benchmark:
    """A shipped evaluation set in IFEval's format: its file, pinned by sha256, checked where read."""

    name: str
    title: str
    input: Path
    sha256: str


BENCHMARKS = {
    "ifeval": Benchmark("ifeval", "IFEval", IFEVAL_INPUT, IFEVAL_SHA256),
    "ifbench": Benchmark("ifbench", "IFBench", IFBENCH_INPUT, IFBENCH_SHA256),
}


def check_sha256(path: Path, expected: str) -> None:
    """A shipped file is the one ecd was measured with: a changed byte is an error naming the file."""
    import hashlib

    got = hashlib.sha256(path.read_bytes()).hexdigest()
    if got != expected:
        raise EcdError(f"{path}: sha256 {got} is not the pinned {expected} (the shipped file was changed; "
                       "`git checkout` it, or pass your own set with --input)")


def read_ifeval_input(path: Path, sha256: str | None = None) -> list[dict[str, Any]]:
    """IFEval's input format (IFBench's too): ``key``, ``prompt``, ``instruction_id_list``,
    ``kwargs`` a line; with ``sha256``, the file must be that one."""
    if sha256 is not None and path.exists():
        check_sha256(path, sha256)
    out = []
    for lineno, rec in iter_jsonl(path):
        for field, kind in (("key", (int, str)), ("prompt", str), ("instruction_id_list", list), ("kwargs", list)):
            if field not in rec:
                raise EcdError(f"{path}:{lineno}: missing field {field!r}")
            if not isinstance(rec[field], kind):
                raise EcdError(f"{path}:{lineno}: field {field!r} has the wrong type ({type(rec[field]).__name__})")
        if not all(isinstance(k, dict) for k in rec["kwargs"]) or not all(isinstance(i, str) for i in rec["instruction_id_list"]):
            raise EcdError(f"{path}:{lineno}: expected a list of ids and a list of kwargs objects")
        if len(rec["kwargs"]) != len(rec["instruction_id_list"]):
            raise EcdError(f"{path}:{lineno}: {len(rec['instruction_id_list'])} instructions but {len(rec['kwargs'])} kwargs")
        for type_id in rec["instruction_id_list"]:
            try:
                C.get(type_id)
            except KeyError as exc:
                raise EcdError(f"{path}:{lineno}: {exc.args[0]}") from None
        out.append(rec)
    return out


def read_ifeval_responses(path: Path) -> dict[str, str]:
    """IFEval's response format, ``{"prompt", "response"}`` a line; a repeated prompt keeps the last."""
    out = {}
    for lineno, rec in iter_jsonl(path):
        if not isinstance(rec.get("prompt"), str) or not isinstance(rec.get("response"), str):
            raise EcdError(f"{path}:{lineno}: expected string fields 'prompt' and 'response'")
        out[rec["prompt"]] = rec["response"]
    return out


def score_responses(input_path: Path, responses_path: Path, output_dir: Path, sha256: str | None = None
                    ) -> dict[str, Any]:
    """Score responses as IFEval (and IFBench) do; write the two result files; return the summary.

    Responses are matched to prompts by their text (or the text without surrounding whitespace,
    as IFBench's evaluator allows); a prompt without a response is an error naming its key, and
    responses to other prompts are ignored.
    """
    inputs = read_ifeval_input(input_path, sha256)
    responses = read_ifeval_responses(responses_path)
    stripped = {p.strip(): r for p, r in responses.items()}
    items = []
    for rec in inputs:
        response = responses.get(rec["prompt"], stripped.get(rec["prompt"].strip()))
        if response is None:
            raise EcdError(f"{responses_path}: no response for the prompt with key {rec['key']}")
        items.append({**rec, "response": response})
    summary, results = score(items)
    for mode in ("strict", "loose"):
        write_jsonl(output_dir / f"eval_results_{mode}.jsonl", results[mode], sort_keys=False)
    keep = ("prompt_strict", "inst_strict", "prompt_loose", "inst_loose", "n_prompts", "n_instructions",
            "unscored_prompts", "unscored_types")
    return {k: summary[k] for k in keep if k in summary}


def held_out_prompts(test_rows: list[Pair]) -> list[dict[str, Any]]:
    """Unique test instructions with their constraints, in a stable order."""
    seen: dict[str, dict[str, Any]] = {}
    for r in test_rows:
        seen.setdefault(
            r["instruction_id"],
            {
                "key": r["instruction_id"],
                "prompt": r["prompt"][0]["content"],
                "instruction_id_list": list(r["instruction_id_list"]),
                "kwargs": [dict(k) for k in r["kwargs"]],
            },
        )
    return [seen[k] for k in sorted(seen)]


def benchmark_prompts(name: str) -> list[dict[str, Any]]:
    """A shipped benchmark's prompts (``ifeval``, ``ifbench``), its file's sha256 checked."""
    bench = BENCHMARKS[name]
    return read_ifeval_input(bench.input, bench.sha256)


def user_oriented(instructions: Path = USER_ORIENTED, references: Path = DAVINCI_003) -> list[dict[str, str]]:
    """The 252 user-oriented instructions (with their input) and text-davinci-003's answers."""
    insts = list(iter_jsonl(instructions))
    refs = list(iter_jsonl(references))
    if len(insts) != len(refs):
        raise EcdError(f"{references}: {len(refs)} answers for {len(insts)} instructions in {instructions}")
    out = []
    for (lineno, rec), (ref_line, ref) in zip(insts, refs):
        instances = rec.get("instances") or [{}]
        inp = instances[0].get("input", "") if isinstance(instances, list) and isinstance(instances[0], dict) else None
        if not isinstance(rec.get("instruction"), str) or not isinstance(inp, str) or "id" not in rec:
            raise EcdError(f"{instructions}:{lineno}: expected 'id', 'instruction' and instances with an 'input'")
        if not isinstance(ref.get("response"), str):
            raise EcdError(f"{references}:{ref_line}: expected a string field 'response'")
        out.append({"key": str(rec["id"]), "prompt": with_input(rec["instruction"].strip(), inp.strip()),
                    "reference": ref["response"].strip()})
    return out


def categories(summary: dict[str, Any]) -> dict[str, float]:
    """The per-group instruction-level strict scores of a summary (``inst_strict_<group>``), without
    the interval bounds (``inst_strict_lo``, ``inst_strict_<group>_hi``, ...)."""
    return {k.removeprefix("inst_strict_"): v for k, v in summary.items()
            if k.startswith("inst_strict_") and not k.endswith(("_lo", "_hi"))}


def category_rows(metrics: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per-category instruction-level strict accuracy, one row per (eval set, category), a column
    per model: the bar chart's data."""
    rows: dict[str, dict[str, Any]] = {}
    for model, sets in metrics.items():
        for set_name, summary in sets.items():
            for name, value in categories(summary).items():
                cat = f"{set_name}/{name}"
                rows.setdefault(cat, {"category": cat})[model] = value
    return [rows[k] for k in sorted(rows)]


def answer(model_dir: Path, prompts: list[dict[str, Any]], params: EvaluateParams, label: str) -> list[str]:
    """Greedy answers of a local model, through the same backend and cache as the teacher's calls."""
    backend = TransformersBackend(
        ModelParams(backend="transformers", model=str(model_dir), temperature=0.0,
                    max_new_tokens=params.max_new_tokens, batch_size=params.batch_size)
    )
    requests = [Request(messages=user(p["prompt"])) for p in prompts]
    completions, _ = generate_cached(backend, requests, template_version=TEMPLATE_VERSION, description=f"answer {label}")
    return [c.text for c in completions]


def _round(summary: Mapping[str, Any]) -> dict[str, Any]:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in summary.items()}


def evaluate_students(params: Params) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, dict[str, Any]]]:
    """The evaluate stage's work: every student of ``evaluate.students`` answers every set of
    ``evaluate.sets``, scored by the constraint library (each student's records written to
    ``data/eval/<student>/<set>.jsonl`` as they are scored), with a judge also the win rate against
    text-davinci-003; then every score's interval and every comparison's (``ecd.uncertainty``).

    Returns the metrics by student and set, and the comparisons by set."""
    from ecd import layout
    from ecd.backends import make_backend
    from ecd.judge import win_rate
    from ecd.pairs import load_pairs
    from ecd.uncertainty import Verdicts, evidence

    e = params.evaluate
    sets: dict[str, list[dict[str, Any]]] = {
        name: held_out_prompts(load_pairs(layout.PAIRS, "test").to_list())[: e.heldout_limit]
        if name == "heldout" else benchmark_prompts(name) for name in e.sets}
    # the constraint types the students were trained on: each benchmark's scores split by seen and unseen types
    trained = {t for ids in load_pairs(layout.PAIRS, "train")["instruction_id_list"] for t in ids}
    judge = make_backend(params.judge) if params.judge else None
    user_set = user_oriented() if judge else []
    metrics: dict[str, dict[str, dict[str, Any]]] = {}
    verdicts: dict[str, dict[str, Verdicts]] = {s: {} for s in sets}
    for name in [str(s) for s in layout.STUDENTS if s in e.students]:
        metrics[name] = {}
        for set_name, prompts in sets.items():
            responses = answer(layout.MODELS / name, prompts, e, f"{name} {set_name}")
            summary, results = score([{**p, "response": r} for p, r in zip(prompts, responses)])
            metrics[name][set_name] = {**summary, "prompt_set": prompt_set_id(prompts)}
            records = scored_records(prompts, results)
            if set_name != "heldout":
                metrics[name][set_name].update(seen_split(records, trained))
            verdicts[set_name][name] = Verdicts.from_results(records)
            write_jsonl(layout.EVAL / name / f"{set_name}.jsonl", records, sort_keys=False)
            print(f"evaluate {name} {set_name}: prompt-level strict {summary['prompt_strict']:.3f}, "
                  f"instruction-level strict {summary['inst_strict']:.3f}")
        if judge:
            answers = answer(layout.MODELS / name, user_set, e, f"{name} user-oriented")
            items = [{"instruction": u["prompt"], "answer": a, "reference": u["reference"]}
                     for u, a in zip(user_set, answers)]
            wins, judgements = win_rate(judge, items, name)
            metrics[name]["winrate"] = _round(wins)
            write_jsonl(layout.EVAL / name / "winrate.jsonl", judgements, sort_keys=False)
            print(f"evaluate {name} win rate vs text-davinci-003: {wins['win_rate']:.3f} "
                  f"({wins['judged']} judged, {wins['unparsable']} unparsable)")
    compare: dict[str, dict[str, Any]] = {}
    for set_name, by_student in verdicts.items():
        if not sets[set_name]:
            continue
        scores, deltas = evidence(by_student, e.bootstrap_resamples, e.bootstrap_seed)
        for name, values in scores.items():
            metrics[name][set_name].update(values)
        compare[set_name] = {pair: {m: _round(v) for m, v in d.items()} for pair, d in deltas.items()}
        for pair in ("preference-control", "grpo-control", "grpo-preference"):
            if pair not in deltas:
                continue
            d = deltas[pair]["prompt_strict"]
            print(f"evaluate {set_name}: {pair.replace('-', ' − ')} prompt-level strict {d['delta']:+.3f} "
                  f"[{d['lo']:+.3f}, {d['hi']:+.3f}], McNemar p={d['p']:.3f}, detectable ≥{d['mde']:.3f}")
        first = metrics[next(iter(metrics))][set_name]
        if first.get("unscored_prompts"):
            print(f"evaluate {set_name}: {first['unscored_prompts']} prompts not scored "
                  f"({first['unscored_types']}: a language resource is missing; "
                  "`python -m ecd.resources` installs it)")
    metrics = {name: {s: _round(v) for s, v in by_set.items()} for name, by_set in metrics.items()}
    return metrics, compare


def score_rows(metrics: Mapping[str, Mapping[str, Mapping[str, Any]]], sets: list[str]) -> list[dict[str, Any]]:
    """The scores plot's rows: each student's prompt-level strict score on each set, with its interval."""
    return [{"set": s, "student": name, "prompt_strict": v["prompt_strict"], "lo": v["prompt_strict_lo"],
             "hi": v["prompt_strict_hi"]}
            for s in sets for name, by_set in metrics.items() if s in by_set for v in [by_set[s]]]

