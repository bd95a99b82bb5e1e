"""Evolution: the teacher's prompt per operation, strict parsing of its JSON with failures by cause,
elimination by cause, weighted operations and multi-constraint rounds."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from ecd import constraints as C
from ecd.backends import ProgrammaticTeacher
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
    assert screen(parent, "Write a short poem about the sea's people. Use no commas.", params) is None
    assert screen(parent, "Write a poem about the sea. Use no commas.", params) == "lost_task"  # 3 of 8 words kept


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
    cands, chains, metrics = evolve_round(state, params, ProgrammaticTeacher(), "r1", 1)
    sizes = Counter(len(c["constraints"]) for c in cands)
    assert set(sizes) <= {1, 2, 3} and len(sizes) > 1
    for c in cands:
        ids = [x["id"] for x in c["constraints"]]
        assert len(ids) == len(set(ids))
        assert c["operation"].count("+") == len(ids) - 1
    assert metrics["evolved"] + metrics["eliminated"] == metrics["chains"] == 30


# ---------------------------------------------------------------------------------------------
# weak teachers: a reply protocol without JSON, the task kept, code's fallback counted as code's


@pytest.mark.parametrize("reply, expected", [
    ("List three fruits without commas.", "List three fruits without commas."),
    ('"List three fruits without commas."', "List three fruits without commas."),
    ("Rewritten instruction: List three fruits without commas.", "List three fruits without commas."),
    ("Here is the new instruction:\nList three fruits without commas.", "List three fruits without commas."),
    ("```\nList three fruits without commas.\n```", "List three fruits without commas."),
    ('{"instruction": "List three fruits without commas."}', "List three fruits without commas."),
])
def test_text_replies_need_no_json(reply: str, expected: str) -> None:
    from ecd.evolve import parse_text_reply

    assert parse_text_reply(reply) == (expected, None)
    assert parse_text_reply("  ``` ```  ") == (None, "empty")


def test_an_evolution_that_drops_the_parents_task_is_eliminated() -> None:
    parent = "Write a short story about a lighthouse keeper who finds a message in a bottle."
    params = EvolveParams()
    assert screen(parent, parent + " Do not use any commas.", params) is None
    assert screen(parent, "Do not use any commas in your answer, please, and be brief.", params) == "lost_task"


def _scripted_teacher(reply: str):
    from conftest import LoopbackChat, chat_completion

    class Handler(LoopbackChat.Handler):
        bodies: list[dict] = []

        def reply(self, n, body):
            type(self).bodies.append(body)
            return 200, chat_completion(reply)

    server, url = LoopbackChat.serve(Handler)
    return server, url, Handler


def test_a_failed_reply_composed_by_code_is_counted_as_code_never_as_the_teacher() -> None:
    from ecd.backends import OpenAIBackend
    from ecd.params import ModelParams

    seeds = load_seeds(SeedParams(limit=4))
    state = [{"chain": None, "root_id": s["id"], "round": 0, "instruction": s,
              "response": {"id": f"r{k}", "text": s["reference"], "model": "m"}} for k, s in enumerate(seeds)]
    server, url, _ = _scripted_teacher("Sure! The answer is 42.")  # answers instead of rewriting
    try:
        teacher = OpenAIBackend(ModelParams(backend="openai", model="m", base_url=url, max_retries=0))
        for fallback in ("none", "compose"):
            params = EvolveParams(chains_per_seed=2, reply_format="text", fallback=fallback)
            cands, chains, metrics = evolve_round(state, params, teacher, "r1", 1)
            if fallback == "none":
                assert cands == [] and metrics["eliminated_by_cause"]["lost_task"] == metrics["chains"]
            else:
                assert metrics["composed_by_code"] == len(cands) == metrics["chains"]
                assert metrics["evolved_by_teacher"] == 0 and metrics["teacher_reply_accepted_rate"] == 0.0
                assert metrics["teacher_failed_by_cause"] == {"lost_task": metrics["chains"]}
                assert all(c["teacher"] == {"backend": "code", "model": "compose"} for c in cands)
    finally:
        server.shutdown()


@pytest.mark.parametrize("structured", [True, False])
def test_structured_output_sends_the_reply_schema_to_the_server(structured: bool) -> None:
    from ecd.backends import OpenAIBackend
    from ecd.params import ModelParams

    seeds = load_seeds(SeedParams(limit=2))
    state = [{"chain": None, "root_id": s["id"], "round": 0, "instruction": s,
              "response": {"id": f"r{k}", "text": s["reference"], "model": "m"}} for k, s in enumerate(seeds)]
    server, url, handler = _scripted_teacher('{"instruction": "x"}')
    try:
        teacher = OpenAIBackend(ModelParams(backend="openai", model="m", base_url=url, max_retries=0,
                                            structured_output=structured))
        evolve_round(state, EvolveParams(chains_per_seed=1), teacher, "r1", 1)
    finally:
        server.shutdown()
    formats = [b.get("response_format") for b in handler.bodies]
    assert formats and all((f is not None) == structured for f in formats)
    if structured:
        schema = formats[0]["json_schema"]["schema"]
        assert formats[0]["type"] == "json_schema" and schema["required"] == ["instruction", "constraints"]
