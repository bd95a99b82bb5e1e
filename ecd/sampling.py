"""Adaptation: the teacher answers each instruction, k samples per instruction."""

from __future__ import annotations

from typing import Any

from ecd.backends import Backend, Request, RunStats, generate_cached
from ecd.records import content_id

TEMPLATE_VERSION = "answer-v1"


def sample_responses(
    instructions: list[dict[str, Any]], backend: Backend, n: int, seed: int, round_name: str
) -> tuple[list[dict[str, Any]], RunStats]:
    """Response records for every instruction. The programmatic teacher is deterministic, so it
    answers once whatever ``n`` is."""
    k = 1 if backend.name == "programmatic" else n
    requests, owners = [], []
    for inst in instructions:
        for s in range(k):
            requests.append(
                Request(
                    messages=[{"role": "user", "content": inst["text"]}],
                    seed=int(content_id(seed, inst["id"], s), 16) % (2**31),
                    task={"kind": "answer", "reference": inst["reference"], "constraints": inst["constraints"]},
                )
            )
            owners.append((inst, s))
    completions, stats = generate_cached(
        backend, requests, template_version=TEMPLATE_VERSION, description=f"sample {round_name}"
    )
    model = backend.identity()
    responses = [
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
