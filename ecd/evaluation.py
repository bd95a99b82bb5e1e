"""Evaluation: students answer held-out instructions; the constraint library scores the answers.

Scores follow IFEval's definitions: prompt-level accuracy (every instruction of a prompt followed)
and instruction-level accuracy (the fraction of all instructions followed), each strict and loose.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from ecd import constraints as C
from ecd.backends import TransformersBackend, generate_cached, Request
from ecd.params import EvaluateParams, ModelParams

TEMPLATE_VERSION = "evaluate-v1"


def clean_kwargs(kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """Kwargs as IFEval's evaluation passes them: the unset (None) fields of the union schema dropped."""
    return {k: v for k, v in (kwargs or {}).items() if v is not None}


def follow_list(response: str, ids: list[str], kwargs: list[dict[str, Any]], loose: bool) -> list[bool]:
    return [C.check(C.Constraint(i, clean_kwargs(k)), response, loose=loose) for i, k in zip(ids, kwargs)]


def score(items: list[dict[str, Any]]) -> tuple[dict[str, float | int], dict[str, list[dict[str, Any]]]]:
    """Score ``{"prompt", "response", "instruction_id_list", "kwargs"}`` items.

    Returns (summary, per-prompt results for ``strict`` and ``loose`` in IFEval's output format).
    """
    results: dict[str, list[dict[str, Any]]] = {"strict": [], "loose": []}
    summary: dict[str, float | int] = {}
    by_category: dict[str, list[bool]] = defaultdict(list)
    for mode in ("strict", "loose"):
        n_prompts = n_follow_all = n_inst = n_inst_follow = 0
        for it in items:
            follow = follow_list(it["response"], it["instruction_id_list"], it["kwargs"], loose=mode == "loose")
            results[mode].append(
                {
                    "instruction_id_list": it["instruction_id_list"],
                    "prompt": it["prompt"],
                    "response": it["response"],
                    "follow_all_instructions": all(follow),
                    "follow_instruction_list": follow,
                }
            )
            n_prompts += 1
            n_follow_all += all(follow)
            n_inst += len(follow)
            n_inst_follow += sum(follow)
            if mode == "strict":
                for i, f in zip(it["instruction_id_list"], follow):
                    by_category[C.get(i).category.split("/")[0]].append(f)
        summary[f"prompt_{mode}"] = round(n_follow_all / max(n_prompts, 1), 4)
        summary[f"inst_{mode}"] = round(n_inst_follow / max(n_inst, 1), 4)
        summary["n_prompts"], summary["n_instructions"] = n_prompts, n_inst
    for cat, fs in sorted(by_category.items()):
        summary[f"inst_strict_{cat}"] = round(sum(fs) / len(fs), 4)
    return summary, results


def held_out_prompts(test_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Unique test instructions with their constraints, in a stable order."""
    seen: dict[str, dict[str, Any]] = {}
    for r in test_rows:
        seen.setdefault(
            r["instruction_id"],
            {
                "key": r["instruction_id"],
                "prompt": r["prompt"][0]["content"],
                "instruction_id_list": list(r["instruction_id_list"]),
                "kwargs": [dict(k) for k in r["kwargs"]],
            },
        )
    return [seen[k] for k in sorted(seen)]


def answer(model_dir: Path, prompts: list[dict[str, Any]], params: EvaluateParams, label: str) -> list[str]:
    """Greedy answers of a local model, through the same backend and cache as the teacher's calls."""
    backend = TransformersBackend(
        ModelParams(backend="transformers", model=str(model_dir), temperature=0.0,
                    max_new_tokens=params.max_new_tokens, batch_size=params.batch_size)
    )
    requests = [Request(messages=[{"role": "user", "content": p["prompt"]}]) for p in prompts]
    completions, _ = generate_cached(backend, requests, template_version=TEMPLATE_VERSION, description=f"answer {label}")
    return [c.text for c in completions]
