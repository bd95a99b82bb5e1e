"""Verification and elimination: check every response against its instruction's constraints, keep
the best verified response per chain, and record the contrast step (I(t), R(t), R(t-1)).

Code-checkable constraints are checked here with the constraint library and nothing else.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any, cast

from ecd import constraints as C
from ecd.contrast import hard_negative_flaw
from ecd.errors import EcdError
from ecd.params import VerifyParams
from ecd.schema import Chain, ConstraintRecord, ConstraintResult, Instruction, Response, State, Step, Verdict

#: the judge's results by ``ecd.judge.judge_key``, for the judge-checked constraints
Judged = dict[str, dict[str, Any]]


def degenerate(text: str, params: VerifyParams, finish_reason: str = "stop") -> str | None:
    """Why a response is unusable as a chosen answer whatever the constraints say, or None.

    An answer cut at ``max_new_tokens`` (finish reason ``length``) is unfinished: it may still be a
    rejected answer (a weak model's), but it is never chosen, since training on it would teach the
    student to stop mid-answer or never to stop. Such answers are counted as ``cut_at_max_tokens``.
    """
    if finish_reason == "length":
        return "cut_at_max_tokens"
    if len(text.strip()) < params.min_chars:
        return "empty"
    low = text.lower()
    if any(m in low for m in params.refusal_markers):
        return "refusal"
    return None


def check_all(text: str, constraints: list[ConstraintRecord], judged: Judged | None = None
              ) -> list[ConstraintResult]:
    """Per-constraint results for one response: by code (strict IFEval semantics), or for
    ``judge:*`` types the judge's answer looked up in ``judged`` (see ``judge_requests``)."""
    from ecd.judge import judge_key

    out: list[ConstraintResult] = []
    for rec in constraints:
        c = C.Constraint.from_record(rec)
        if c.verifiable:
            out.append({"id": c.id, "kwargs": c.kwargs, "passed": C.check(c, text), "method": "code"})
            continue
        result = (judged or {}).get(judge_key(text, c))
        if result is None:
            raise EcdError(f"constraint {c.id} needs a judge model to check it: set `judge` in params.yaml")
        out.append(cast(ConstraintResult, {"id": c.id, "kwargs": c.kwargs, **result}))  # the judge's verdict fields
    return out


def make_checker(judge: Any | None) -> Any:
    """``check(text, constraints)`` for answers verified outside a round (random and weak answers in
    pairing): code-checkable constraints by code, judge-checked ones by asking ``judge``."""
    from ecd.judge import judge_constraints

    def check(text: str, constraints: list[ConstraintRecord]) -> list[ConstraintResult]:
        items = [(text, c) for c in map(C.Constraint.from_record, constraints) if not c.verifiable]
        judged = judge_constraints(judge, items, description="judge")[0] if items and judge is not None else None
        return check_all(text, constraints, judged)

    return check


def judge_requests(
    instructions: list[Instruction], responses: list[Response], chains: list[Chain] | None
) -> list[tuple[str, C.Constraint]]:
    """Every (response text, judge-checked constraint) that ``verify_round`` will look up: each
    response against its instruction, and each chain's R(t-1) against its candidate I(t)."""
    inst_by_id = {i["id"]: i for i in instructions}

    def judged(text: str, inst: Instruction) -> list[tuple[str, C.Constraint]]:
        cons = [C.Constraint.from_record(r) for r in inst["constraints"]]
        return [(text, c) for c in cons if not c.verifiable]

    items = [it for r in responses for it in judged(r["text"], inst_by_id[r["instruction_id"]])]
    for ch in chains or []:
        if ch["candidate_id"] is not None:
            items += judged(ch["parent"]["response"]["text"], inst_by_id[ch["candidate_id"]])
    return items


def make_verdict(response: Response, instruction: Instruction, params: VerifyParams,
                 judged: Judged | None = None) -> Verdict:
    results = check_all(response["text"], instruction["constraints"], judged)
    bad = degenerate(response["text"], params, response.get("finish_reason", "stop"))
    return {
        "response_id": response["id"],
        "instruction_id": instruction["id"],
        "results": results,
        "all_pass": bad is None and all(r["passed"] for r in results),
        "degenerate": bad,
    }


def pass_rate(verdicts: list[Verdict]) -> float:
    """The share of responses that pass every constraint (the teacher's pass rate in a round)."""
    return sum(v["all_pass"] for v in verdicts) / max(len(verdicts), 1)


def round_pass_rates(rounds: list[str]) -> dict[str, float]:
    """Each round's teacher pass rate (share of its answers that pass every constraint), read from
    the round's verdicts, for the dataset card."""
    from ecd import layout
    from ecd.records import iter_jsonl

    rates = {}
    for rnd in rounds:  # a line at a time: a round's verdicts grow with the seeds
        passed = total = 0
        for _, v in iter_jsonl(layout.round_file(rnd, "verdicts.jsonl")):
            passed, total = passed + bool(v["all_pass"]), total + 1
        rates[rnd] = round(passed / max(total, 1), 4)
    return rates


def _best(verdicts: list[Verdict]) -> tuple[Verdict | None, str]:
    """The first fully passing verdict (lowest sample index) and "", or None and the reason there is none."""
    for v in verdicts:
        if v["all_pass"]:
            return v, ""
    first_fault = verdicts[0]["degenerate"] if verdicts else None
    if first_fault and all(v["degenerate"] for v in verdicts):
        return None, first_fault
    return None, "response_fails" if verdicts else "no_response"


def verdicts_by_instruction(instructions: list[Instruction], responses: list[Response], params: VerifyParams,
                            judged: Judged | None) -> tuple[list[Verdict], dict[str, list[Verdict]]]:
    """Every response's verdict (in the instructions' order, then by sample index: a chunk's verdicts
    are the same lines whatever the chunks), and the verdicts of each instruction."""
    inst_by_id = {i["id"]: i for i in instructions}
    place = {i["id"]: k for k, i in enumerate(instructions)}
    by_inst: dict[str, list[Verdict]] = defaultdict(list)
    verdicts = []
    for r in sorted(responses, key=lambda r: (place[r["instruction_id"]], r["sample"])):
        v = make_verdict(r, inst_by_id[r["instruction_id"]], params, judged)
        verdicts.append(v)
        by_inst[r["instruction_id"]].append(v)
    return verdicts, by_inst


def root_states(instructions: list[Instruction], by_inst: dict[str, list[Verdict]], resp_by_id: dict[str, Response],
                causes: Counter[str]) -> list[State]:
    """Round 0: every seed with a usable answer becomes the root state of its chains."""
    state: list[State] = []
    for inst in instructions:
        best, cause = _best(by_inst.get(inst["id"], []))
        if best is None:
            causes[cause] += 1
            continue
        state.append({"chain": None, "root_id": inst["root_id"], "round": 0, "instruction": inst,
                      "response": resp_by_id[best["response_id"]]})
    return state


def chain_steps(chains: list[Chain], inst_by_id: dict[str, Instruction], by_inst: dict[str, list[Verdict]],
                resp_by_id: dict[str, Response], judged: Judged | None, causes: Counter[str]
                ) -> tuple[list[State], list[Step]]:
    """Rounds 1+: each chain's new state (its candidate's if an answer verified, else its parent's) and,
    for each accepted step, the contrast (I(t), R(t), R(t-1)) with R(t-1) checked against I(t)."""
    state: list[State] = []
    steps: list[Step] = []
    for ch in chains:
        parent: State = {"chain": ch["chain"], "root_id": ch["root_id"], **ch["parent"]}
        if ch["candidate_id"] is None:
            causes["not_evolved"] += 1
            state.append(parent)
            continue
        inst = inst_by_id[ch["candidate_id"]]
        best, cause = _best(by_inst.get(inst["id"], []))
        if best is None:
            causes[cause] += 1
            state.append(parent)
            continue
        chosen = resp_by_id[best["response_id"]]
        rejected = ch["parent"]["response"]
        n_old = len(ch["parent"]["instruction"]["constraints"])
        state.append({"chain": ch["chain"], "root_id": ch["root_id"], "round": inst["round"],
                      "instruction": inst, "response": chosen})
        steps.append({
            "chain": ch["chain"],
            "root_id": ch["root_id"],
            "round": inst["round"],
            "instruction": inst,
            "chosen": chosen,
            "rejected": rejected,
            "chosen_results": best["results"],
            "rejected_results": check_all(rejected["text"], inst["constraints"], judged),
            "new_constraints": [c["id"] for c in inst["constraints"][n_old:]],
        })
    return state, steps


def round_counts(instructions: list[Instruction], responses: list[Response], verdicts: list[Verdict],
                 accepted: int, steps: list[Step], causes: Counter[str]) -> dict[str, Any]:
    """What :func:`round_metrics` reports, as counts that add up over chunks (``ecd.stage.add_counts``)."""
    type_total: Counter[str] = Counter()
    type_pass: Counter[str] = Counter()
    for v in verdicts:
        for res in v["results"]:
            type_total[res["id"]] += 1
            type_pass[res["id"]] += res["passed"]
    return {
        "instructions": len(instructions),
        "responses": len(responses),
        "responses_all_pass": sum(v["all_pass"] for v in verdicts),
        "responses_cut_at_max_tokens": sum(r["finish_reason"] == "length" for r in responses),
        "accepted": accepted,
        "hard_negative_steps": sum(hard_negative_flaw(s["rejected_results"], s["new_constraints"]) is None
                                   for s in steps),
        "eliminated_by_cause": dict(causes),
        "type_total": dict(type_total),
        "type_pass": dict(type_pass),
        "judged": sum(1 for v in verdicts for r in v["results"] if r["method"] == "judge"),
        "judge_unparsable": sum(1 for v in verdicts for r in v["results"] if r.get("judge_parse") == "unparsable"),
    }


def round_metrics(counts: dict[str, Any]) -> dict[str, Any]:
    """The stage's metrics file from a round's counts: pass rates by constraint type, eliminations by cause."""
    out = {k: v for k, v in counts.items() if k not in ("type_total", "type_pass")}
    out["eliminated_by_cause"] = dict(sorted(counts["eliminated_by_cause"].items()))
    total, passed = counts["type_total"], counts["type_pass"]
    out["pass_rate_by_type"] = {t: round(passed.get(t, 0) / total[t], 4) for t in sorted(total)}
    return {k: out[k] for k in ("instructions", "responses", "responses_all_pass", "responses_cut_at_max_tokens",
                                "accepted", "hard_negative_steps", "eliminated_by_cause", "pass_rate_by_type",
                                "judged", "judge_unparsable")}


def verify_round(
    instructions: list[Instruction],
    responses: list[Response],
    chains: list[Chain] | None,
    params: VerifyParams,
    judged: Judged | None = None,
) -> tuple[list[Verdict], list[State], list[Step], dict[str, Any]]:
    """Returns (verdicts, state, steps, counts: :func:`round_metrics` makes the metrics of them).
    ``judged``: the judge's results for the judge-checked constraints (``ecd.judge.judge_constraints``
    over ``judge_requests``). A round's chunks of seeds are verified apart and their outputs joined.

    ``chains`` is None for the seed round r0: every seed with a usable response becomes a root state.
    Otherwise every chain gets a state: its candidate's if a response verified, else its parent's.
    """
    resp_by_id = {r["id"]: r for r in responses}
    verdicts, by_inst = verdicts_by_instruction(instructions, responses, params, judged)
    causes: Counter[str] = Counter()
    steps: list[Step] = []
    if chains is None:
        state = root_states(instructions, by_inst, resp_by_id, causes)
    else:
        inst_by_id = {i["id"]: i for i in instructions}
        state, steps = chain_steps(chains, inst_by_id, by_inst, resp_by_id, judged, causes)
    accepted = len(steps) if chains is not None else len(state)
    return verdicts, state, steps, round_counts(instructions, responses, verdicts, accepted, steps, causes)


#: a chunk of a round's records: (instructions, responses, chains, params, the judge's results, the round)
VerifyChunk = tuple[list[Instruction], list[Response], "list[Chain] | None", VerifyParams, "Judged | None", str]

#: what a worker sends back: verdicts, state and steps as the round's files hold them, counts
Written = tuple[list[Verdict], list[Any], list[Any], dict[str, Any]]


def _written(result: tuple[list[Verdict], list[State], list[Step], dict[str, Any]], rnd: str) -> Written:
    """A chunk's result as the files hold it (by reference): what crosses back from a worker is ids, not texts."""
    from ecd.rounds import state_ref, step_ref

    verdicts, state, steps, counts = result
    return verdicts, [state_ref(e, rnd) for e in state], [step_ref(s) for s in steps], counts


def verify_chunk(chunk: VerifyChunk) -> Written:
    """:func:`verify_round` on one chunk, as one argument: what a worker process runs (``ecd.workers``)."""
    instructions, responses, chains, params, judged, rnd = chunk
    return _written(verify_round(instructions, responses, chains, params, judged), rnd)


#: a chunk of a round's chain references: (the rounds' folder, the round, (line, reference) pairs, params)
VerifyRefs = tuple[str, str, list[tuple[int, Any]], VerifyParams]


def verify_refs(job: VerifyRefs) -> Written:
    """:func:`verify_round` on a chunk of chain references, the chains, their candidates and the
    answers read whole where it runs (no judge): what a worker process is sent."""
    from ecd.rounds import worker_rounds

    folder, rnd, refs, params = job
    rounds = worker_rounds(folder)
    chains = [rounds.whole_chain(rnd, ref, line) for line, ref in refs]
    instructions = [rounds.instruction(rnd, c["candidate_id"]) for c in chains if c["candidate_id"]]
    responses = [a for i in instructions for a in rounds.answers(rnd, i["id"])]
    return _written(verify_round(instructions, responses, chains, params), rnd)


def verify_files(rnd: str, params: Any) -> dict[str, Any]:
    """The ``verify@rN`` stage: verify round ``rnd``'s files a chunk of seeds at a time, the chunks
    over the machine's cores (``ecd.workers``), and write its verdicts, state and steps as the chunks
    come back, in order, and its metrics; returns the metrics. ``params``: the run's ``Params``."""
    from ecd import layout
    from ecd.backends import RunStats, apply_failure_policy, make_backend
    from ecd.judge import judge_constraints
    from ecd.records import jsonl_writer, write_json
    from ecd.rounds import Rounds, chunk_seeds, seeds_per_chunk, share_rounds
    from ecd.stage import add_counts
    from ecd.workers import ordered_map

    rounds = Rounds()
    rounds.need(rnd, "instructions", "responses", *(("chains",) if rnd != "r0" else ()))
    share_rounds(rounds)
    judge = make_backend(params.judge) if params.judge is not None else None
    per_read, per_work = seeds_per_chunk(), chunk_seeds(rounds)

    def refs() -> Iterator[VerifyRefs]:
        """Without a judge, the workers are sent chunks of the round's chain references and read the
        records whole themselves: this process reads only the references."""
        for part in rounds.chain_ref_chunks(rnd, per_work):
            yield str(rounds.dir), rnd, part, params.verify

    def chunks() -> Iterator[VerifyChunk]:
        """Up to ``seeds_per_chunk`` seeds read (and judged) at once, handed to the workers in smaller chunks."""
        if rnd == "r0":
            parts: Iterator[tuple[list[Instruction], Any]] = ((c, None) for c in rounds.instruction_chunks(rnd, per_read))
        else:
            parts = (([rounds.instruction(rnd, c["candidate_id"]) for c in chains if c["candidate_id"]], chains)
                     for chains in rounds.chain_chunks(rnd, per_read))
        for instructions, chains in parts:
            responses: list[Response] = [a for i in instructions for a in rounds.answers(rnd, i["id"])]
            judged = None
            items = judge_requests(instructions, responses, chains)
            if items and judge is not None:
                judged, stats = judge_constraints(judge, items, description=f"judge {rnd}", check_failures=False)
                calls.add(stats)
            yield from _worker_chunks(instructions, responses, chains, per_work, params.verify, judged, rnd)

    counts = round_counts([], [], [], 0, [], Counter())
    calls = RunStats()
    with jsonl_writer(layout.round_file(rnd, "verdicts.jsonl")) as verdicts, \
            jsonl_writer(layout.round_file(rnd, "state.jsonl")) as state, \
            jsonl_writer(layout.round_file(rnd, "steps.jsonl")) if rnd != "r0" else _no_writer() as steps:
        by_refs = judge is None and rnd != "r0"  # round 0 has no chains; a judge's calls are made here
        results = ordered_map(verify_refs, refs()) if by_refs else ordered_map(verify_chunk, chunks())
        for v, s, st, c in results:
            for rec in v:
                verdicts(rec)
            for entry in s:
                state(entry)
            for step in st:
                steps(step)
            add_counts(counts, c)
        if judge is not None:
            apply_failure_policy(judge, calls, f"judge {rnd}")
    metrics = round_metrics(counts)
    write_json(layout.round_metrics(rnd, "verify"), metrics)
    return metrics


def _worker_chunks(instructions: list[Instruction], responses: list[Response], chains: list[Chain] | None,
                   per_work: int, params: VerifyParams, judged: Judged | None, rnd: str) -> Iterator[VerifyChunk]:
    """The workers' chunks of what was read: ``per_work`` seeds each, every record in its order."""
    by_root: dict[str, list[Instruction]] = defaultdict(list)
    for i in instructions:
        by_root[i["root_id"]].append(i)
    answers: dict[str, list[Response]] = defaultdict(list)
    for r in responses:
        answers[r["instruction_id"]].append(r)
    tried: dict[str, list[Chain]] = defaultdict(list)
    for c in chains or []:
        tried[c["root_id"]].append(c)
    roots = list(dict.fromkeys(x["root_id"] for x in (chains if chains is not None else instructions)))
    for k in range(0, len(roots), per_work):
        group = roots[k:k + per_work]
        mine = [i for r in group for i in by_root[r]]
        yield (mine, [a for i in mine for a in answers[i["id"]]],
               None if chains is None else [c for r in group for c in tried[r]], params, judged, rnd)


def _no_writer() -> Any:
    """A writer for round 0, which has no steps."""
    from contextlib import nullcontext

    return nullcontext(lambda rec: None)
