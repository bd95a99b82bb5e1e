"""Evolution: a teacher rewrites I(t-1) into a harder I(t) by one operation of the taxonomy.

The operation and its exact requirement (a constraint type from the library with sampled kwargs)
are drawn by code, seeded per chain and round; the teacher phrases the new instruction. Knowing the
requirement exactly is what lets the verifier check it by code later. Draws favour requirements that
the chain's current response does not already meet, so that R(t-1) becomes a hard negative for I(t).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

from ecd import constraints as C
from ecd.backends import Backend, Completion, Request, RunStats, generate_cached
from ecd.contrast import hard_negative_flaw
from ecd.params import EvolveParams
from ecd.records import content_id, seed_from
from ecd.schema import Chain, Instruction, State, TeacherInfo, user
from ecd.screening import compose, parse_reply, parse_text_reply, screen

#: one chain's plan for a round: its state, the constraints drawn for it (none when it cannot
#: evolve) and why none could be drawn
Plan = tuple[State, list[C.Constraint], str | None]

#: what each operation of the taxonomy asks of the teacher, in the words of the paper's operations
OPERATIONS: dict[str, str] = {
    "content": "Add a requirement on what the answer must contain (a keyword, an element, an audience).",
    "style": "Add a requirement on how the answer is written (its case, punctuation, tone, concision).",
    "format": "Add a requirement on the shape of the answer (its layout, length, opening, ending, markup).",
    "reasoning": "Add a requirement that the answer show its reasoning (steps, justification, an order of parts).",
    "breadth": "Widen the task: ask the answer to cover more ground (alternatives, perspectives, repetition).",
}

EVOLVE_PROMPT = """You make instructions harder to follow, one operation at a time.

Operation ({operation}): {guidance}
The requirement to add, exactly:
{requirements}

Rewrite the instruction below so that it also asks for the requirement above, phrased naturally.
Keep every requirement the instruction already has. Do not answer the instruction.

Instruction:
{instruction}

{reply}"""

#: the reply each protocol asks for (``evolve.reply_format``)
REPLY_FORMATS = {
    "json": 'Reply with JSON only, in this form:\n{{"instruction": "<the rewritten instruction>", '
            '"constraints": {constraints_json}}}',
    "text": "Reply with the rewritten instruction only: no title, no quotes, no answer, no explanation.",
}
#: the cache-key version of each protocol's prompt
TEMPLATE_VERSIONS = {"json": "evolve-v2", "text": "evolve-text-v1"}


def reply_schema(added: list[C.Constraint]) -> dict[str, Any]:
    """The JSON schema of a ``json`` reply, for servers that constrain their output to one: the
    instruction as a non-empty string and exactly the planned constraints."""
    planned = [{"type": "object", "properties": {"id": {"const": c.id}, "kwargs": {"const": c.kwargs}},
                "required": ["id", "kwargs"]} for c in added]
    return {"type": "object", "additionalProperties": False, "required": ["instruction", "constraints"],
            "properties": {"instruction": {"type": "string", "minLength": 1},
                           "constraints": {"type": "array", "prefixItems": planned, "items": False,
                                           "minItems": len(added)}}}


def evolve_prompt(instruction: str, added: list[C.Constraint], reply_format: str = "json") -> str:
    """The teacher's prompt for one step: the operation's guidance, the requirement(s) in words, and
    the reply asked for — JSON with the constraints (ids and kwargs, IFEval's where the type is
    IFEval's) it must return, or the rewritten instruction alone."""
    branches = sorted({branch(c.id) for c in added})
    constraints_json = json.dumps([{"id": c.id, "kwargs": c.kwargs} for c in added], ensure_ascii=False)
    return EVOLVE_PROMPT.format(
        operation=", ".join(branches),
        guidance=" ".join(OPERATIONS[b] for b in branches),
        requirements="\n".join(f"- {c.text}" for c in added),
        instruction=instruction,
        reply=REPLY_FORMATS[reply_format].format(constraints_json=constraints_json),
    )


def branch(type_id: str) -> str:
    return C.get(type_id).category.split("/")[0]


def chain_rng(seed: int, round_name: str, chain: str) -> random.Random:
    """One generator per chain and round: a chain's draws do not depend on any other chain."""
    return random.Random(int(content_id(seed, round_name, chain), 16))


def chain_id(entry: State) -> str:
    """A forked state's chain (a root state has none until ``fork`` gives it its chains)."""
    chain = entry["chain"]
    if chain is None:
        raise ValueError(f"a root state of {entry['root_id']} reached evolution without a chain")
    return chain


def fork(state: list[State], chains_per_seed: int) -> list[State]:
    """Give every root state ``chains_per_seed`` independent chains (chains start at round 1)."""
    out: list[State] = []
    for entry in state:
        if entry["chain"] is None:
            for k in range(chains_per_seed):
                out.append({**entry, "chain": f"{entry['root_id']}-c{k}"})
        else:
            out.append(entry)
    return sorted(out, key=chain_id)


def _type_weights(types: list[str], params: EvolveParams) -> tuple[list[str], list[float]]:
    """Each allowed type's draw weight: its branch's weight, shared equally among the branch's
    sub-types present (a ``branch/sub`` key in ``op_weights`` overrides), then among their types."""
    subs: dict[str, list[str]] = {}
    for t in types:
        subs.setdefault(C.get(t).category, []).append(t)
    per_branch: dict[str, int] = {}
    for cat in subs:
        per_branch[cat.split("/")[0]] = per_branch.get(cat.split("/")[0], 0) + 1
    out_t, out_w = [], []
    for cat in sorted(subs):
        b = cat.split("/")[0]
        w_sub = params.op_weights.get(cat, params.op_weights.get(b, 0.0) / per_branch[b])
        for t in sorted(subs[cat]):
            if w_sub > 0:
                out_t.append(t)
                out_w.append(w_sub / len(subs[cat]))
    return out_t, out_w


def allowed_types(params: EvolveParams, answerable_only: bool, judge: bool) -> list[str]:
    """The types a round may add: ``evolve.types`` or every type; only those with a rewrite for the
    programmatic teacher (it answers by rewriting), only code-checkable ones without a judge."""
    allowed = params.types or C.all_types()
    if not params.allow_held_out_types:  # IFBench's types stay out of training data: they test generalisation
        allowed = [t for t in allowed if not C.get(t).held_out]
    if answerable_only:
        allowed = [t for t in allowed if C.get(t).has_rewrite]
    if not judge:
        allowed = [t for t in allowed if C.get(t).verifiable]
    return list(allowed)


def draw_constraints(
    entry: State, params: EvolveParams, rng: random.Random, allowed: list[str], answerable_only: bool
) -> tuple[list[C.Constraint], str | None]:
    """Draw one to ``max_new_constraints`` new constraints for a chain, or return why none could be.

    Every drawn constraint is compatible with the instruction's and with each other, and one the
    chain's current response does not already meet (so R(t-1) becomes a hard negative for I(t)).
    """
    instruction = entry["instruction"]
    existing = [C.Constraint.from_record(c) for c in instruction["constraints"]]
    room = params.max_constraints - len(existing)
    if room <= 0:
        return [], "max_constraints"
    types, weights = _type_weights(allowed, params)
    if not types:
        return [], "no_types"
    want = min(room, rng.randint(1, params.max_new_constraints))
    ctx = C.SampleContext(
        instruction=instruction["text"], response=entry["response"]["text"], title=instruction["source"].get("name", "")
    )
    added: list[C.Constraint] = []
    last = "no_compatible_constraint"
    for _ in range(params.attempts):
        if len(added) == want:
            break
        type_id = rng.choices(types, weights)[0]
        ctype = C.get(type_id)
        kwargs = ctype.sample(rng, ctx)
        if kwargs is None or not C.compatible([*existing, *added], type_id, kwargs):
            continue
        candidate = C.Constraint(type_id, kwargs, ctype.describe(kwargs, rng), ctype.verifiable)
        if ctype.verifiable and hard_negative_flaw([{"id": type_id, "passed": C.check(candidate, ctx.response)}],
                                                   [type_id]):
            last = "already_satisfied"  # R(t-1) would meet it: no hard negative
            continue
        if answerable_only and C.apply_rewrites(instruction["reference"], [*existing, *added, candidate]) is None:
            last = "unanswerable"
            continue
        added.append(candidate)
    return (added, None) if added else ([], last)


def plan_round(chains: list[State], params: EvolveParams, round_name: str, allowed: list[str],
               answerable_only: bool) -> list[Plan]:
    """Draw each chain's new requirements with its own seeded generator."""
    plans = []
    for entry in chains:
        rng = chain_rng(params.seed, round_name, chain_id(entry))
        added, cause = draw_constraints(entry, params, rng, allowed, answerable_only)
        plans.append((entry, added, cause))
    return plans


def ask_teacher(plans: list[Plan], params: EvolveParams, backend: Backend, round_name: str, check_failures: bool = True
                ) -> tuple[dict[int, Completion], RunStats]:
    """One evolution request per chain that has new requirements; the replies by plan index."""
    todo = [(i, e, added) for i, (e, added, _) in enumerate(plans) if added]
    fmt = params.reply_format
    requests = [
        Request(
            messages=user(evolve_prompt(e["instruction"]["text"], added, fmt)),
            seed=seed_from(params.seed, round_name, e["chain"], "teacher"),
            task={"kind": "evolve", "instruction": e["instruction"]["text"], "reply_format": fmt,
                  "description": " ".join(c.text for c in added),
                  "constraints": [{"id": c.id, "kwargs": c.kwargs} for c in added]},
            json_schema=reply_schema(added) if fmt == "json" else None,
        )
        for _, e, added in todo
    ]
    completions, stats = generate_cached(
        backend, requests, template_version=TEMPLATE_VERSIONS[fmt], description=f"evolve {round_name}",
        check_failures=check_failures)
    return {i: comp for (i, _, _), comp in zip(todo, completions)}, stats


def teacher_of(backend: Backend) -> TeacherInfo:
    """The teacher an evolved instruction records: the backend's name and model."""
    return {"backend": backend.name, "model": backend.identity()}


def candidate_record(entry: State, added: list[C.Constraint], evolved: str, teacher: TeacherInfo, round_name: str,
                     round_index: int, by_code: bool = False) -> Instruction:
    """The evolved instruction I(t): the parent's constraints, then the new ones (``teacher``: the
    backend's name and model, as :func:`teacher_of` gives them)."""
    parent = entry["instruction"]
    constraints = [*parent["constraints"], *(c.to_record() for c in added)]
    return {
        "id": content_id(parent["id"], chain_id(entry), round_name, evolved, constraints),
        "root_id": parent["root_id"],
        "parent_id": parent["id"],
        "chain": chain_id(entry),
        "round": round_index,
        "text": evolved,
        "constraints": constraints,
        "operation": "+".join(f"{C.get(c.id).category}/{c.id}" for c in added),
        "reference": parent["reference"],
        "source": parent["source"],
        "teacher": {"backend": "code", "model": "compose"} if by_code else teacher,
    }


def chain_record(entry: State, candidate: Instruction | None, cause: str | None) -> Chain:
    return {
        "chain": chain_id(entry),
        "root_id": entry["root_id"],
        "parent": {"instruction": entry["instruction"], "response": entry["response"], "round": entry["round"]},
        "candidate_id": candidate["id"] if candidate else None,
        "eliminated": cause,
    }


def plan_chunk(chunk: tuple[list[State], EvolveParams, str, bool, bool]) -> list[Plan]:
    """Fork and plan one chunk of a round's seeds: ``(state, params, round name, answerable_only,
    judge)``, as one argument — what a worker process runs (``ecd.workers``); each chain draws from
    its own generator, so chunks plan apart as they would together."""
    state, params, round_name, answerable_only, judge = chunk
    return plan_round(fork(state, params.chains_per_seed), params, round_name,
                      allowed_types(params, answerable_only, judge), answerable_only)


#: a chunk of plans with the teacher's replies (None: no request, nothing drawn), the params, the
#: teacher (:func:`teacher_of`), the round's name and index: what :func:`screen_plans` takes
ScreenJob = tuple[list[Plan], "list[Completion | None]", EvolveParams, TeacherInfo, str, int, bool]


def screen_plans(job: ScreenJob) -> tuple[list[Instruction], list[Chain], Counter[str], Counter[str]]:
    """Screen the teacher's replies to a chunk of plans: (candidate instructions, one chain record
    per plan, eliminations by cause, teacher replies refused by cause); ``as_written`` (the job's
    last item): the records as the round's files hold them (``ecd.rounds.bare``, ``chain_ref``), so
    that what a worker sends back is ids, not the parents' texts. A pure function of the chunk, so
    that it runs in a worker process (``ecd.workers``) as it would here."""
    from ecd.rounds import bare, chain_ref

    plans, replies, params, teacher, round_name, round_index, as_written = job
    causes: Counter[str] = Counter()
    teacher_failed: Counter[str] = Counter()
    candidates, chain_records = [], []
    parse = parse_reply if params.reply_format == "json" else (lambda text, _: parse_text_reply(text))
    for (entry, added, cause), reply in zip(plans, replies):
        cand = None
        if added:
            assert reply is not None  # every plan that drew requirements was asked
            parent = entry["instruction"]["text"]
            evolved, cause = parse(reply.text, added)
            if evolved is not None:
                cause = screen(parent, evolved, params)
            by_code = False
            if cause is not None and params.fallback == "compose":
                teacher_failed[cause] += 1
                evolved, by_code = compose(parent, added), True
                cause = screen(parent, evolved, params)
            if cause is None:
                assert evolved is not None  # a reply either parses to an instruction or names its fault
                cand = candidate_record(entry, added, evolved, teacher, round_name, round_index, by_code)
                candidates.append(cand)
        if cause:
            causes[cause] += 1
        chain_records.append(chain_record(entry, cand, cause))
    if as_written:
        return [bare(c) for c in candidates], [chain_ref(c) for c in chain_records], causes, teacher_failed  # type: ignore[misc]
    return candidates, chain_records, causes, teacher_failed


#: the most plans one chunk of :func:`screen_plans` holds in a worker process
SCREEN_CHUNK = 1_000


def finish_round(plans: list[Plan], params: EvolveParams, backend: Backend, round_name: str, round_index: int,
                 check_failures: bool = True, workers: int = 1, as_written: bool = False
                 ) -> tuple[list[Instruction], list[Chain], dict[str, Any], RunStats]:
    """Ask the teacher for every planned step (here: a model keeps its batch full), screen the
    replies (``workers`` > 1: in that many worker processes, in order), write the records:
    (candidate instructions, one chain record per chain, counts that add up over chunks:
    :func:`evolve_metrics`, the teacher's calls; ``check_failures``: as ``generate_cached``'s;
    ``as_written``: the records as the round's files hold them, as :func:`screen_plans` gives them)."""
    from ecd.workers import ordered_map

    answered, stats = ask_teacher(plans, params, backend, round_name, check_failures)
    replies = [answered.get(i) for i in range(len(plans))]
    teacher = teacher_of(backend)
    jobs = ((plans[k:k + SCREEN_CHUNK], replies[k:k + SCREEN_CHUNK], params, teacher, round_name, round_index, as_written)
            for k in range(0, len(plans), SCREEN_CHUNK))
    causes: Counter[str] = Counter()
    teacher_failed: Counter[str] = Counter()
    candidates: list[Instruction] = []
    chain_records: list[Chain] = []
    for found, records, part, failed in ordered_map(screen_plans, jobs, workers):
        candidates += found
        chain_records += records
        causes.update(part)
        teacher_failed.update(failed)
    composed = sum(c["teacher"] is not None and c["teacher"]["backend"] == "code" for c in candidates)
    counts = {
        "chains": len(plans),
        "asked": sum(1 for _, added, _ in plans if added),
        "evolved": len(candidates),
        "evolved_by_teacher": len(candidates) - composed,
        "composed_by_code": composed,
        "teacher_failed_by_cause": dict(teacher_failed),
        "eliminated": sum(causes.values()),
        "eliminated_by_cause": dict(causes),
        "teacher_calls": stats.calls,
        "cache_hits": stats.hits,
        "cache_misses": stats.misses,
        "failed_calls": stats.failed,
        "failed_by_cause": dict(stats.failed_by_cause),
    }
    return candidates, chain_records, counts, stats


def evolve_metrics(counts: dict[str, Any]) -> dict[str, Any]:
    """The stage's metrics file from a round's counts (:func:`finish_round`'s, added over chunks)."""
    asked = counts["asked"]
    return {
        "chains": counts["chains"],
        "evolved": counts["evolved"],
        "evolved_by_teacher": counts["evolved_by_teacher"],
        "composed_by_code": counts["composed_by_code"],
        "teacher_reply_accepted_rate": round(counts["evolved_by_teacher"] / asked, 4) if asked else 0.0,
        **{k: (dict(sorted(counts[k].items())) if isinstance(counts[k], dict) else counts[k])
           for k in ("teacher_failed_by_cause", "eliminated", "eliminated_by_cause", "teacher_calls", "cache_hits",
                     "cache_misses", "failed_calls", "failed_by_cause")},
    }


def evolve_round(
    state: list[State], params: EvolveParams, backend: Backend, round_name: str, round_index: int,
    judge: bool = False,
) -> tuple[list[Instruction], list[Chain], dict[str, Any]]:
    """Evolve every chain of ``state`` once: plan, ask the teacher, screen the replies, write records.
    ``judge``: whether a judge is configured, so that judge-checked constraint types may be added.

    Returns (candidate instruction records, one chain record per chain, metrics). A chain whose step
    is eliminated keeps its parent state and may try again next round. (The stage does the same a
    chunk of seeds at a time: :func:`plan_chunk` over worker processes, then :func:`finish_round`.)
    """
    plans = plan_chunk((state, params, round_name, backend.answers_by_rewriting, judge))
    candidates, chains, counts, _ = finish_round(plans, params, backend, round_name, round_index)
    return candidates, chains, evolve_metrics(counts)
