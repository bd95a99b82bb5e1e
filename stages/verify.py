"""verify ROUND: check responses, eliminate failed steps, record contrast steps and chain state.

The round is verified a chunk of seeds at a time (``ecd.rounds``), the chunks over the machine's
cores (``ecd.workers``), the outputs written as the chunks come back, in order."""

from collections import Counter
from collections.abc import Iterator
from typing import Any

from ecd import layout
from ecd.backends import make_backend
from ecd.judge import judge_constraints
from ecd.params import load_params
from ecd.records import jsonl_writer, write_json
from ecd.rounds import Rounds, chunk_seeds, state_ref, step_ref
from ecd.schema import Instruction, Response
from ecd.stage import add_counts, round_arg, stage
from ecd.verification import VerifyChunk, judge_requests, round_counts, round_metrics, verify_chunk
from ecd.workers import ordered_map


@stage
def main() -> None:
    params = load_params()
    rnd = round_arg(params)
    rounds = Rounds()
    judge = make_backend(params.judge) if params.judge is not None else None
    per_chunk = chunk_seeds(rounds)

    def chunks() -> Iterator[VerifyChunk]:
        if rnd == "r0":
            parts: Iterator[tuple[list[Instruction], Any]] = ((c, None) for c in rounds.instruction_chunks(rnd, per_chunk))
        else:
            parts = (([rounds.instruction(rnd, c["candidate_id"]) for c in chains if c["candidate_id"]], chains)
                     for chains in rounds.chain_chunks(rnd, per_chunk))
        for instructions, chains in parts:
            responses: list[Response] = [a for i in instructions for a in rounds.answers(rnd, i["id"])]
            judged = None
            items = judge_requests(instructions, responses, chains)
            if items and judge is not None:
                judged, _ = judge_constraints(judge, items, description=f"judge {rnd}")
            yield instructions, responses, chains, params.verify, judged

    counts = round_counts([], [], [], 0, [], Counter())
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
    metrics = round_metrics(counts)
    write_json(layout.round_metrics(rnd, "verify"), metrics)
    print(f"verify {rnd}: {metrics['accepted']} accepted; eliminated {metrics['eliminated_by_cause']}")


def _nowhere() -> Any:
    """A writer for round 0, which has no steps."""
    from contextlib import nullcontext

    return nullcontext(lambda rec: None)


if __name__ == "__main__":
    main()
