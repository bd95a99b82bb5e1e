"""evolve ROUND: the teacher rewrites every chain's accepted instruction into a harder one.

A chunk of seeds at a time (``ecd.rounds``): small chunks are planned in worker processes
(``ecd.workers``), then the teacher is asked for up to ``seeds_per_chunk`` seeds' plans at once (a
model keeps its batch full) and the replies screened here, in order."""

from typing import Any

from ecd import layout
from ecd.backends import RunStats, apply_failure_policy, make_backend
from ecd.evolve import Plan, evolve_metrics, finish_round, plan_chunk
from ecd.params import load_params
from ecd.records import jsonl_writer, write_json
from ecd.rounds import Rounds, bare, chain_ref, chunk_seeds, seeds_per_chunk
from ecd.stage import add_counts, round_arg, stage
from ecd.workers import ordered_map


@stage
def main() -> None:
    params = load_params()
    rnd = round_arg(params, evolving=True)
    rounds = Rounds()
    rounds.need(params.rounds[rnd].prev, "state")
    backend = make_backend(params.teacher)
    chunks = ((state, params.evolve, rnd, backend.answers_by_rewriting, params.judge is not None)
              for state in rounds.state_chunks(params.rounds[rnd].prev, chunk_seeds(rounds), by_chain=True))
    counts: dict[str, Any] = {"chains": 0, "asked": 0, "evolved": 0, "evolved_by_teacher": 0, "composed_by_code": 0,
                              "teacher_failed_by_cause": {}, "eliminated": 0, "eliminated_by_cause": {},
                              "teacher_calls": 0, "cache_hits": 0, "cache_misses": 0, "failed_calls": 0,
                              "failed_by_cause": {}}
    calls = RunStats()
    with jsonl_writer(layout.round_file(rnd, "instructions.jsonl")) as instructions, \
            jsonl_writer(layout.round_file(rnd, "chains.jsonl")) as chains:
        def finish(plans: list[Plan]) -> None:
            candidates, attempts, part, stats = finish_round(plans, params.evolve, backend, rnd, int(rnd[1:]),
                                                             check_failures=False)
            calls.add(stats)
            for c in candidates:
                instructions(bare(c))
            for a in attempts:
                chains(chain_ref(a))
            add_counts(counts, part)

        batch: list[Plan] = []
        for plans in ordered_map(plan_chunk, chunks):
            batch += plans
            if len({p[0]["root_id"] for p in batch}) >= seeds_per_chunk():
                finish(batch)
                batch = []
        if batch:
            finish(batch)
        apply_failure_policy(backend, calls, f"evolve {rnd}")  # over the round's calls, before any file is in place
    metrics = evolve_metrics(counts)
    write_json(layout.round_metrics(rnd, "evolve"), metrics)
    print(f"evolve {rnd}: {metrics['evolved']}/{metrics['chains']} chains evolved; "
          f"eliminated {metrics['eliminated_by_cause']}")


if __name__ == "__main__":
    main()
