"""Adaptation: the teacher answers each instruction, k samples per instruction."""

from __future__ import annotations

from typing import Any

from ecd.backends import Backend, Request, RunStats, generate_cached
from ecd.records import content_id, seed_from
from ecd.schema import Instruction, Response, user

TEMPLATE_VERSION = "answer-v1"


def sample_responses(
    instructions: list[Instruction], backend: Backend, n: int, seed: int, round_name: str, check_failures: bool = True
) -> tuple[list[Response], RunStats]:
    """Response records for every instruction, ``n`` each with their own seeds (one from a backend
    whose answer does not depend on the seed, such as the programmatic teacher)."""
    k = n if backend.samples_vary else 1
    requests, owners = [], []
    for inst in instructions:
        for s in range(k):
            requests.append(
                Request(
                    messages=user(inst["text"]),
                    seed=seed_from(seed, inst["id"], s),
                    task={"kind": "answer", "reference": inst["reference"], "constraints": inst["constraints"]},
                )
            )
            owners.append((inst, s))
    completions, stats = generate_cached(
        backend, requests, template_version=TEMPLATE_VERSION, description=f"sample {round_name}",
        check_failures=check_failures)
    model = backend.identity()
    responses: list[Response] = [
        {
            "id": content_id(inst["id"], model, s, c.text),
            "instruction_id": inst["id"],
            "model": model,
            "sample": s,
            "text": c.text,
            "finish_reason": c.finish_reason,
            "prompt_tokens": c.prompt_tokens,
            "completion_tokens": c.completion_tokens,
        }
        for (inst, s), c in zip(owners, completions)
    ]
    return responses, stats


def sample_files(rnd: str, backend: Backend, n: int, seed: int) -> dict[str, Any]:
    """The ``sample@rN`` stage: the teacher answers round ``rnd``'s instructions ``ECD_CHUNK_SEEDS``
    seeds at a time (``ecd.rounds``), the answers written as each chunk is done and the failure policy
    applied to all the round's calls before the file is in place; returns the metrics it writes."""
    from ecd import layout
    from ecd.backends import apply_failure_policy
    from ecd.records import jsonl_writer, write_json
    from ecd.rounds import Rounds, seeds_per_chunk

    rounds = Rounds()
    rounds.need(rnd, "instructions")
    calls, count, cut = RunStats(), 0, 0
    with jsonl_writer(layout.round_file(rnd, "responses.jsonl")) as write:
        for instructions in rounds.instruction_chunks(rnd, seeds_per_chunk()):
            responses, stats = sample_responses(instructions, backend, n, seed, rnd, check_failures=False)
            calls.add(stats)
            for r in responses:
                write(r)
            count += len(responses)
            cut += sum(r["finish_reason"] == "length" for r in responses)
        apply_failure_policy(backend, calls, f"sample {rnd}")
    metrics = {"responses": count, "cut_at_max_tokens": cut, **calls.metrics()}
    write_json(layout.round_metrics(rnd, "sample"), metrics)
    return metrics
