"""The ``evolve@rN`` stage over round files of any size: the previous round's state read a chunk of
seeds at a time, the chunks planned and their replies screened in worker processes that are sent
references (``ecd.workers``, ``ecd.rounds.worker_rounds``), the teacher asked in the stage's own
process, a batch of ``ECD_CHUNK_SEEDS`` seeds at once, and the records written in order.
``ecd.evolve`` holds the method: planning, the teacher's requests, screening, the records."""

from __future__ import annotations

from typing import Any

from ecd.backends import Backend, RunStats
from ecd.evolve import Plan, evolve_metrics, finish_round, plan_chunk
from ecd.params import EvolveParams


def plan_refs(job: tuple[str, str, list[tuple[int, Any]], EvolveParams, str, bool, bool]) -> list[Plan]:
    """:func:`plan_chunk` on a chunk of the previous round's state references ``(folder, previous
    round, (line, reference) pairs, params, round name, answerable_only, judge)``, the entries read
    whole where it runs: what a worker process is sent (references, not texts)."""
    from ecd.rounds import worker_rounds

    folder, prev, refs, params, round_name, answerable_only, judge = job
    rounds = worker_rounds(folder)
    state = [rounds.whole_state(prev, ref, line) for line, ref in refs]
    return plan_chunk((state, params, round_name, answerable_only, judge))


def evolve_files(rnd: str, prev: str, evolve: EvolveParams, backend: Backend, judge: bool) -> dict[str, Any]:
    """The ``evolve@rN`` stage: evolve every chain of round ``prev``'s state into round ``rnd``, a
    chunk of seeds at a time: small chunks read and planned in worker processes (``ecd.workers``,
    sent the state's references), the teacher asked here for up to ``ECD_CHUNK_SEEDS`` seeds' plans
    at once (a model keeps its batch full), the replies screened in the workers, in order; writes
    the round's instructions, chains and metrics and returns the metrics."""
    from ecd import layout
    from ecd.backends import apply_failure_policy
    from ecd.records import jsonl_writer, write_json
    from ecd.rounds import Rounds, chunk_seeds, round_index, seeds_per_chunk, share_rounds
    from ecd.stage import add_counts
    from ecd.workers import ordered_map, worker_count

    rounds = Rounds()
    rounds.need(prev, "state")
    share_rounds(rounds)
    workers = worker_count()
    chunks = ((str(rounds.dir), prev, refs, evolve, rnd, backend.answers_by_rewriting, judge)
              for refs in rounds.state_ref_chunks(prev, chunk_seeds(rounds, workers), by_chain=True))
    counts: dict[str, Any] = {"chains": 0, "asked": 0, "evolved": 0, "evolved_by_teacher": 0, "composed_by_code": 0,
                              "teacher_failed_by_cause": {}, "eliminated": 0, "eliminated_by_cause": {},
                              "teacher_calls": 0, "cache_hits": 0, "cache_misses": 0, "failed_calls": 0,
                              "failed_by_cause": {}}
    calls = RunStats()
    with jsonl_writer(layout.round_file(rnd, "instructions.jsonl")) as instructions, \
            jsonl_writer(layout.round_file(rnd, "chains.jsonl")) as chains:
        def finish(plans: list[Plan]) -> None:
            candidates, attempts, part, stats = finish_round(plans, evolve, backend, rnd, round_index(rnd),
                                                             check_failures=False, workers=workers, as_written=True)
            calls.add(stats)
            for c in candidates:
                instructions(c)
            for a in attempts:
                chains(a)
            add_counts(counts, part)

        batch: list[Plan] = []
        roots: set[str] = set()  # the batch's seeds
        per_batch = seeds_per_chunk()
        for plans in ordered_map(plan_refs, chunks, workers):
            batch += plans
            roots.update(p[0]["root_id"] for p in plans)
            if len(roots) >= per_batch:
                finish(batch)
                batch, roots = [], set()
        if batch:
            finish(batch)
        apply_failure_policy(backend, calls, f"evolve {rnd}")  # over the round's calls, before any file is in place
    metrics = evolve_metrics(counts)
    write_json(layout.round_metrics(rnd, "evolve"), metrics)
    return metrics
