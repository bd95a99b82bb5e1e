"""Evolution: a teacher rewrites I(t-1) into a harder I(t) by one operation of the taxonomy.

The operation and its exact requirement (a constraint type from the library with sampled kwargs)
are drawn by code, seeded per chain and round; the teacher phrases the new instruction. Knowing the
requirement exactly is what lets the verifier check it by code later. Draws favour requirements that
the chain's current response does not already meet, so that R(t-1) becomes a hard negative for I(t).
"""

from __future__ import annotations

import difflib
import json
import random
import re
from collections import Counter
from typing import Any

from ecd import constraints as C
from ecd.backends import Backend, Request, generate_cached
from ecd.params import EvolveParams
from ecd.records import content_id

TEMPLATE_VERSION = "evolve-v1"

EVOLVE_PROMPT = """You make instructions harder to follow, one requirement at a time.

Rewrite the instruction below so that it also asks for this new requirement:
{description}

Keep every requirement the instruction already has. Do not answer the instruction.

Instruction:
{instruction}

Reply with JSON only, in this form: {{"instruction": "<the rewritten instruction>"}}"""

#: replies that are refusals, not instructions
_REFUSALS = ("i'm sorry", "i cannot", "i can't", "as an ai")


def branch(type_id: str) -> str:
    return C.get(type_id).category.split("/")[0]


def chain_rng(seed: int, round_name: str, chain: str) -> random.Random:
    """One generator per chain and round: a chain's draws do not depend on any other chain."""
    return random.Random(int(content_id(seed, round_name, chain), 16))


def fork(state: list[dict[str, Any]], chains_per_seed: int) -> list[dict[str, Any]]:
    """Give every root state ``chains_per_seed`` independent chains (chains start at round 1)."""
    out = []
    for entry in state:
        if entry["chain"] is None:
            for k in range(chains_per_seed):
                out.append({**entry, "chain": f"{entry['root_id']}-c{k}"})
        else:
            out.append(entry)
    return sorted(out, key=lambda e: e["chain"])


def draw_constraint(
    entry: dict[str, Any], params: EvolveParams, rng: random.Random, answerable_only: bool
) -> tuple[C.Constraint | None, str | None]:
    """Draw a new constraint for a chain, or return the reason none could be drawn."""
    instruction = entry["instruction"]
    existing = [C.Constraint.from_record(c) for c in instruction["constraints"]]
    if len(existing) >= params.max_constraints:
        return None, "max_constraints"
    allowed = params.types or C.rewritable_types()
    if answerable_only:
        allowed = [t for t in allowed if C.get(t).has_rewrite]
    by_branch: dict[str, list[str]] = {}
    for t in allowed:
        by_branch.setdefault(branch(t), []).append(t)
    branches = [b for b in sorted(by_branch) if params.branch_weights.get(b, 0) > 0]
    if not branches:
        return None, "no_types"
    weights = [params.branch_weights[b] for b in branches]
    ctx = C.SampleContext(
        instruction=instruction["text"], response=entry["response"]["text"], title=instruction["source"].get("name", "")
    )
    last = "no_compatible_constraint"
    for _ in range(params.attempts):
        type_id = rng.choice(by_branch[rng.choices(branches, weights)[0]])
        ctype = C.get(type_id)
        kwargs = ctype.sample(rng, ctx)
        if kwargs is None or not C.compatible(existing, type_id, kwargs):
            continue
        candidate = C.Constraint(type_id, kwargs, ctype.describe(kwargs, rng), ctype.verifiable)
        if ctype.verifiable and C.check(candidate, ctx.response):
            last = "already_satisfied"
            continue
        if answerable_only and C.apply_rewrites(instruction["reference"], [*existing, candidate]) is None:
            last = "unanswerable"
            continue
        return candidate, None
    return None, last


def parse_reply(text: str) -> tuple[str | None, str | None]:
    """Extract ``instruction`` from a teacher's JSON reply, tolerating code fences and prose around it.

    Returns (instruction, None) or (None, cause) with cause one of ``empty``, ``no_json``,
    ``bad_json``, ``missing_field``.
    """
    if not text.strip():
        return None, "empty"
    body = re.sub(r"```(?:json)?", "", text)
    start = body.find("{")
    if start < 0:
        return None, "no_json"
    try:
        obj, _ = json.JSONDecoder().raw_decode(body[start:])
    except json.JSONDecodeError:
        return None, "bad_json"
    value = obj.get("instruction") if isinstance(obj, dict) else None
    if not isinstance(value, str) or not value.strip():
        return None, "missing_field"
    return value.strip(), None


def _normalise(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def screen(parent: str, evolved: str, max_chars: int) -> str | None:
    """Elimination of a bad evolution step; returns the cause or None."""
    if _normalise(evolved) == _normalise(parent):
        return "unchanged"
    if len(evolved) > max_chars:
        return "too_long"
    if evolved.lower().lstrip().startswith(_REFUSALS):
        return "refusal"
    if difflib.SequenceMatcher(None, _normalise(parent), _normalise(evolved)).ratio() > 0.98:
        return "near_duplicate"
    return None


def evolve_round(
    state: list[dict[str, Any]], params: EvolveParams, backend: Backend, round_name: str, round_index: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Evolve every chain of ``state`` once.

    Returns (candidate instruction records, one chain record per chain, metrics). A chain whose step
    is eliminated keeps its parent state and may try again next round.
    """
    chains = fork(state, params.chains_per_seed)
    answerable_only = backend.name == "programmatic"
    causes: Counter[str] = Counter()
    plans: list[tuple[dict[str, Any], C.Constraint | None, str | None]] = []
    for entry in chains:
        rng = chain_rng(params.seed, round_name, entry["chain"])
        cons, cause = draw_constraint(entry, params, rng, answerable_only)
        plans.append((entry, cons, cause))
    todo = [(i, e, c) for i, (e, c, _) in enumerate(plans) if c is not None]
    requests = [
        Request(
            messages=[{"role": "user", "content": EVOLVE_PROMPT.format(description=c.text, instruction=e["instruction"]["text"])}],
            seed=int(content_id(params.seed, round_name, e["chain"], "teacher"), 16) % (2**31),
            task={"kind": "evolve", "instruction": e["instruction"]["text"], "description": c.text},
        )
        for _, e, c in todo
    ]
    completions, stats = generate_cached(
        backend, requests, template_version=TEMPLATE_VERSION, description=f"evolve {round_name}"
    )
    replies = {i: comp for (i, _, _), comp in zip(todo, completions)}

    candidates, chain_records = [], []
    for i, (entry, cons, cause) in enumerate(plans):
        parent = entry["instruction"]
        cand = None
        if cons is not None:
            evolved, cause = parse_reply(replies[i].text)
            if evolved is not None:
                cause = screen(parent["text"], evolved, params.max_instruction_chars)
            if cause is None:
                constraints = [*parent["constraints"], cons.to_record()]
                cand = {
                    "id": content_id(parent["id"], entry["chain"], round_name, evolved, constraints),
                    "root_id": parent["root_id"],
                    "parent_id": parent["id"],
                    "chain": entry["chain"],
                    "round": round_index,
                    "text": evolved,
                    "constraints": constraints,
                    "operation": f"{C.get(cons.id).category}/{cons.id}",
                    "reference": parent["reference"],
                    "source": parent["source"],
                    "teacher": {"backend": backend.name, "model": backend.identity()},
                }
                candidates.append(cand)
        if cause:
            causes[cause] += 1
        chain_records.append(
            {
                "chain": entry["chain"],
                "root_id": entry["root_id"],
                "parent": {"instruction": entry["instruction"], "response": entry["response"], "round": entry["round"]},
                "candidate_id": cand["id"] if cand else None,
                "eliminated": cause,
            }
        )
    metrics = {
        "chains": len(chains),
        "evolved": len(candidates),
        "eliminated": sum(causes.values()),
        "eliminated_by_cause": dict(sorted(causes.items())),
        "teacher_calls": stats.calls,
        "cache_hits": stats.hits,
        "cache_misses": stats.misses,
    }
    return candidates, chain_records, metrics
