"""Named params profiles: a YAML file in ``profiles/`` whose values go over ``params.yaml``.

A profile is a params set a user runs in one command (``ecd profile run smollm2``, ``make real``): the
merged params are validated, written to ``params.yaml`` for the length of one ``dvc exp run``, and
the shipped file is put back afterwards, so the experiment records every value it ran with and the
workspace keeps the offline defaults.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from ecd.errors import EcdError, did_you_mean
from ecd.params import read_yaml, validate_params
from ecd.records import read_text, write_text

PROFILES = Path("profiles")
PARAMS = Path("params.yaml")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over``'s values over ``base``; mappings merge key by key, except ``rounds`` and ``models``,
    which a profile gives whole."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in ("rounds", "models"):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def merged(name: str) -> dict[str, Any]:
    """params.yaml with profile ``name`` over it, validated."""
    path = PROFILES / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in PROFILES.glob("*.yaml"))
        raise EcdError(f"no profile {name!r}{did_you_mean(name, known)}; profiles: {', '.join(known) or 'none'}")
    over = read_yaml(path) or {}
    base = read_yaml(PARAMS) or {}
    params = _merge(base, over)
    validate_params(params, f"{PARAMS} with {path}")
    return params


def _dvc_set(params: dict[str, Any], item: str) -> str:
    """DVC's ``-S`` overrides only keys the params file has; a key the profile leaves at its default
    (``teacher.base_url``) is added with DVC's ``+`` prefix."""
    key = item.split("=", 1)[0]
    node: Any = params
    for part in key.lstrip("+").split("."):
        if not isinstance(node, dict) or part not in node:
            return item if item.startswith("+") else "+" + item
        node = node[part]
    return item


def run(name: str, exp_name: str, sets: list[str], targets: list[str] | None = None) -> int:
    """``dvc exp run --temp -n exp_name`` with the profile's params (the workspace keeps its own
    outputs; ``dvc exp apply exp_name`` brings the run's in), params.yaml restored afterwards. The
    call cache and the timings log are this project's, so the run reuses every answer already made."""
    import os

    from ecd import layout
    from ecd.cache import cache_dir

    params = merged(name)
    shipped = PARAMS.read_bytes()
    env = {**os.environ, "ECD_CACHE_DIR": str(cache_dir().resolve()),
           "ECD_TIMINGS": str(layout.timings_path().resolve())}
    import signal

    write_text(PARAMS, yaml.safe_dump(params, sort_keys=False))
    # a terminated run must still put the shipped params.yaml back (SIGINT already unwinds)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        cmd = ["dvc", "exp", "run", "--temp", "-n", exp_name]
        for s in sets:
            cmd += ["-S", _dvc_set(params, s)]
        return subprocess.run([*cmd, *(targets or [])], env=env).returncode
    finally:
        PARAMS.write_bytes(shipped)


def description(name: str) -> str:
    """The profile's header comment up to its ``Needs:``/``Run:`` lines: what it is, in words."""
    lines = []
    for line in read_text(PROFILES / f"{name}.yaml").splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if text.startswith(("Needs:", "Run:", "Run it")):
            break
        lines.append(text)
    return re.split(r" (?:Run:|Run it) ", " ".join(lines))[0]


def _seed_count(params: dict[str, Any]) -> int | None:
    seeds = params.get("seeds") or {}
    limit = seeds.get("limit")
    source = Path(str(seeds.get("source", "")))
    if source.suffix == ".jsonl" and source.exists():
        count = sum(1 for line in source.read_text(encoding="utf-8").splitlines() if line.strip())
        return min(count, limit) if limit else count
    return limit  # a JSON list or a hub dataset: its size is known here only through seeds.limit


#: measured on the default run (commit 9a4c369, data/rounds/rN/instructions.jsonl): a seed
#: instruction is 230 characters, and each round adds about 63; the evolution prompt's template is
#: 367 characters; a token is taken as 4 characters (the openai backend's own rate-limit estimate)
SEED_CHARS, ROUND_CHARS, EVOLVE_TEMPLATE_CHARS, CHARS_PER_TOKEN = 230, 63, 367, 4


def estimate(params: dict[str, Any]) -> dict[str, Any]:
    """Bounds on a run's model calls and tokens, from its params and the rates above: every chain
    evolves in every round (eliminations only lower the counts), ``sample.n`` answers per
    instruction, every answer uses its ``max_new_tokens`` (completion tokens are an upper bound; an
    evolution reply is the evolved instruction, of the measured length),
    the judge checks the judge-checked share of each answer's constraints, the weak model answers
    once per instruction a pair can come from (``pair.weak_limit``), and every student answers
    every evaluation prompt. ``seeds`` None where the seed count is unknown (a hub dataset or a JSON
    list without ``seeds.limit``)."""
    import math

    from ecd import constraints as C
    from ecd.evolve import allowed_types
    from ecd.params import EvolveParams

    seeds = _seed_count(params)
    if seeds is None:
        return {"seeds": None}
    ev, sample, tr, pair, teacher = params["evolve"], params["sample"], params["train"], params["pair"], params["teacher"]
    rounds = len(params.get("rounds") or {})
    chains = seeds * ev["chains_per_seed"]
    per_round = [chains * (1 + sample["n"]) for _ in range(rounds)]
    calls = seeds * sample["n"] + sum(per_round)
    answers = calls - rounds * chains  # the evolution calls reply with an instruction, not an answer
    evolved_chars = sum(chains * (SEED_CHARS + t * ROUND_CHARS) for t in range(1, rounds + 1))
    chars = (seeds * sample["n"] * SEED_CHARS
             + sum(chains * (EVOLVE_TEMPLATE_CHARS + SEED_CHARS + (t - 1) * ROUND_CHARS)
                   + chains * sample["n"] * (SEED_CHARS + t * ROUND_CHARS) for t in range(1, rounds + 1)))
    code_teacher = teacher["backend"] == "programmatic"
    types = allowed_types(EvolveParams(**ev), answerable_only=code_teacher, judge=bool(params.get("judge")))
    judged = sum(1 for t in types if not C.get(t).verifiable) / max(len(types), 1)
    checks = chains * sample["n"] * sum(min(t, ev["max_constraints"]) for t in range(1, rounds + 1))
    uses_weak = "model_gap" in {*pair["strategy"], *pair["match"]}
    weak_calls = min(pair.get("weak_limit") or rounds * chains, rounds * chains) if uses_weak else 0
    ev_p = params["evaluate"]
    heldout = ev_p.get("heldout_limit") or math.ceil(rounds * chains * params["split"]["test_fraction"])
    prompts = sum({"heldout": heldout, "ifeval": 541, "ifbench": 294}[s] for s in ev_p["sets"])
    students = 4 if tr["sft"]["steps"] == 0 else 5  # an SFT copy of the start answers from the call cache
    dpo, grpo = tr["dpo"], tr["grpo"]
    grpo_prompts = grpo.get("max_prompts") or dpo.get("max_pairs")
    launch = str(tr.get("launch", "python")).split()
    processes = int(launch[launch.index("--num_processes") + 1]) if "--num_processes" in launch[:-1] else 1
    return {
        "seeds": seeds, "chains": chains, "rounds": rounds, "teacher_is_code": code_teacher,
        "teacher_calls": calls, "teacher_prompt_tokens": 0 if code_teacher else chars // CHARS_PER_TOKEN,
        "teacher_completion_tokens": 0 if code_teacher else evolved_chars // CHARS_PER_TOKEN + answers * teacher["max_new_tokens"],
        "judge_calls": round(checks * judged), "weak_calls": weak_calls,
        "weak_completion_tokens": weak_calls * pair["weak"]["max_new_tokens"],
        "eval_answers": prompts * students, "eval_completion_tokens": prompts * students * ev_p["max_new_tokens"],
        "processes": processes,
        "preference_steps": math.ceil(dpo["max_pairs"] / (dpo["batch_size"] * processes)) if dpo.get("max_pairs") else None,
        "grpo_completion_tokens": grpo_prompts * grpo["num_generations"] * grpo["max_completion_length"]
        if grpo_prompts else None,
    }
