"""Evolution: the teacher's prompt per operation, strict parsing of its JSON with failures by cause,
elimination by cause, weighted operations and multi-constraint rounds."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from ecd import constraints as C
from ecd.backends import ProgrammaticBackend
from ecd.evolve import OPERATIONS, allowed_types, branch, draw_constraints, evolve_prompt, evolve_round, parse_reply, screen
from ecd.params import EvolveParams, SeedParams
from ecd.seeds import load_seeds

NO_COMMA = C.Constraint("punctuation:no_comma", {}, "Do not use any commas.")
TWO_BULLETS = C.Constraint("detectable_format:number_bullet_lists", {"num_bullets": 2}, "Use exactly 2 bullets.")


def test_prompt_names_the_operation_and_asks_for_ids_and_kwargs() -> None:
    prompt = evolve_prompt("List three fruits.", [TWO_BULLETS])
    assert OPERATIONS["format"] in prompt
    assert "Use exactly 2 bullets." in prompt and "List three fruits." in prompt
    assert '"id": "detectable_format:number_bullet_lists", "kwargs": {"num_bullets": 2}' in prompt


@pytest.mark.parametrize(
    "reply, cause",
    [
        ("", "empty"),
        ("Sure! Here is a harder instruction.", "no_json"),
        ('{"instruction": "List three fruits', "bad_json"),
        ('{"text": "List three fruits without commas."}', "missing_field"),
        ('{"instruction": "   "}', "missing_field"),
        ('{"instruction": "x", "constraints": [{"id": "punctuation:no_commas", "kwargs": {}}]}', "unknown_constraint"),
        ('{"instruction": "x", "constraints": [{"id": "change_case:english_capital", "kwargs": {}}]}', "constraint_mismatch"),
        ('{"instruction": "x", "constraints": "no commas"}', "missing_field"),
    ],
)
def test_parse_failures_have_a_cause(reply: str, cause: str) -> None:
    assert parse_reply(reply, [NO_COMMA]) == (None, cause)


def test_parse_tolerates_fences_prose_and_a_missing_constraints_field() -> None:
    body = json.dumps({"instruction": "List three fruits without commas.",
                       "constraints": [{"id": "punctuation:no_comma", "kwargs": {}}]})
    for reply in (body, f"```json\n{body}\n```", f"Here you go:\n{body}\nHope this helps!",
                  '{"instruction": "List three fruits without commas."}'):
        assert parse_reply(reply, [NO_COMMA]) == ("List three fruits without commas.", None)


def test_screen_causes() -> None:
    params = EvolveParams(max_instruction_chars=80, min_edit_distance=0.05)
    parent = "Write a short poem about the sea and the people who live beside it every day."
    assert screen(parent, parent.upper() + "  ", params) == "unchanged"
    assert screen(parent, parent + " Use no commas at all in the whole of your answer please.", params) == "too_long"
    assert screen(parent, "I'm sorry, I cannot rewrite this.", params) == "refusal"
    assert screen(parent, parent.replace("short", "shrt"), params) == "near_duplicate"
    assert screen(parent, "Write a poem about the sea. Use no commas.", params) is None


def _entry(seed: dict, k: int) -> dict:
    return {"chain": f"c{k}", "instruction": seed, "response": {"text": seed["reference"]}}


def test_operation_weights_steer_the_draws() -> None:
    seeds = load_seeds(SeedParams())[:40]
    params = EvolveParams(op_weights={"format": 1.0, "style/case": 2.0})
    allowed = allowed_types(params, answerable_only=True, judge=False)
    drawn = Counter()
    for k, seed in enumerate(seeds):
        for j in range(5):
            added, _ = draw_constraints(_entry(seed, k), params, random.Random(k * 10 + j), allowed, True)
            drawn.update(C.get(c.id).category for c in added)
    assert drawn and all(cat.startswith("format/") or cat == "style/case" for cat in drawn)
    # style/case alone weighs twice the whole format branch
    assert drawn["style/case"] > sum(v for cat, v in drawn.items() if cat.startswith("format/"))


def test_judge_types_only_with_a_judge_and_never_for_the_programmatic_teacher() -> None:
    params = EvolveParams(types=None)
    with_judge = allowed_types(params, answerable_only=False, judge=True)
    assert any(not C.get(t).verifiable for t in with_judge)
    assert all(C.get(t).verifiable for t in allowed_types(params, answerable_only=False, judge=False))
    assert all(C.get(t).has_rewrite for t in allowed_types(params, answerable_only=True, judge=True))
    assert {branch(t) for t in with_judge} == set(OPERATIONS)


def test_a_round_can_add_several_constraints() -> None:
    seeds = load_seeds(SeedParams())[:30]
    state = [{"chain": None, "root_id": s["root_id"], "round": 0, "instruction": s,
              "response": {"text": s["reference"], "id": s["id"], "model": "ref"}} for s in seeds]
    params = EvolveParams(chains_per_seed=1, max_new_constraints=3)
    cands, chains, metrics = evolve_round(state, params, ProgrammaticBackend(), "r1", 1)
    sizes = Counter(len(c["constraints"]) for c in cands)
    assert set(sizes) <= {1, 2, 3} and len(sizes) > 1
    for c in cands:
        ids = [x["id"] for x in c["constraints"]]
        assert len(ids) == len(set(ids))
        assert c["operation"].count("+") == len(ids) - 1
    assert metrics["evolved"] + metrics["eliminated"] == metrics["chains"] == 30
