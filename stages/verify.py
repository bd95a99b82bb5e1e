"""verify ROUND: check responses, eliminate failed steps, record contrast steps and chain state.

The round is verified a chunk of seeds at a time (``ecd.rounds``), the chunks over the machine's
cores (``ecd.workers``), the outputs written as the chunks come back, in order."""

from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

from ecd import layout
from ecd.backends import RunStats, apply_failure_policy, make_backend
from ecd.judge import judge_constraints
from ecd.params import VerifyParams, load_params
from ecd.records import jsonl_writer, write_json
from ecd.rounds import Rounds, chunk_seeds, seeds_per_chunk, state_ref, step_ref
from ecd.schema import Chain, Instruction, Response
from ecd.stage import add_counts, round_arg, stage
from ecd.verification import Judged, VerifyChunk, judge_requests, round_counts, round_metrics, verify_chunk
from ecd.workers import ordered_map


@stage
def main() -> None:
    params = load_params()
    rnd = round_arg(params)
    rounds = Rounds()
    rounds.need(rnd, "instructions", "responses", *(("chains",) if rnd != "r0" else ()))
    judge = make_backend(params.judge) if params.judge is not None else None
    per_read, per_work = seeds_per_chunk(), chunk_seeds(rounds)

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
            yield from _split(instructions, responses, chains, per_work, params.verify, judged)

    counts = round_counts([], [], [], 0, [], Counter())
    calls = RunStats()
    outputs = [layout.round_file(rnd, "verdicts.jsonl"), layout.round_file(rnd, "state.jsonl")]
    with jsonl_writer(outputs[0]) as verdicts, jsonl_writer(outputs[1]) as state, \
            jsonl_writer(layout.round_file(rnd, "steps.jsonl")) if rnd != "r0" else _nowhere() as steps:
        for v, s, st, c in ordered_map(verify_chunk, chunks()):
            for rec in v:
                verdicts(rec)
            for entry in s:
                state(state_ref(entry, rnd))
            for step in st:
                steps(step_ref(step))
            add_counts(counts, c)
        if judge is not None:
            apply_failure_policy(judge, calls, f"judge {rnd}")
    metrics = round_metrics(counts)
    write_json(layout.round_metrics(rnd, "verify"), metrics)
    print(f"verify {rnd}: {metrics['accepted']} accepted; eliminated {metrics['eliminated_by_cause']}")


def _split(instructions: list[Instruction], responses: list[Response], chains: list[Chain] | None, per_work: int,
           params: VerifyParams, judged: Judged | None) -> Iterator[VerifyChunk]:
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
               None if chains is None else [c for r in group for c in tried[r]], params, judged)


def _nowhere() -> Any:
    """A writer for round 0, which has no steps."""
    from contextlib import nullcontext

    return nullcontext(lambda rec: None)


if __name__ == "__main__":
    main()
