"""Screening an evolution step: the teacher's reply parsed into the evolved instruction I(t), and
the step eliminated when that instruction is no instruction, no change, too long, a near copy, or has
lost the task (each cause counted by ``evolve@rN``). ``compose`` writes I(t) by code instead.
"""

from __future__ import annotations

import json
import re

from ecd import constraints as C
from ecd.params import EvolveParams

#: replies that are refusals, not instructions
_REFUSALS = ("i'm sorry", "i cannot", "i can't", "as an ai")



def parse_reply(text: str, planned: list[C.Constraint]) -> tuple[str | None, str | None]:
    """Extract the evolved instruction from a teacher's JSON reply, tolerating code fences and prose
    around it, and check the constraints it returns against the ``planned`` ones.

    Returns (instruction, None) or (None, cause) with cause one of ``empty``, ``no_json``,
    ``bad_json``, ``missing_field``, ``unknown_constraint`` (an id not in the library) or
    ``constraint_mismatch`` (other constraints than those asked for). A reply without a
    ``constraints`` field is taken to carry the planned ones.
    """
    if not text.strip():
        return None, "empty"
    body = re.sub(r"```(?:json)?", "", text)
    start = body.find("{")
    if start < 0:
        return None, "no_json"
    try:
        obj, _ = json.JSONDecoder().raw_decode(body[start:])
    except json.JSONDecodeError:
        return None, "bad_json"
    value = obj.get("instruction") if isinstance(obj, dict) else None
    if not isinstance(value, str) or not value.strip():
        return None, "missing_field"
    returned = obj.get("constraints")
    if returned is not None:
        if not isinstance(returned, list) or not all(isinstance(c, dict) for c in returned):
            return None, "missing_field"
        for c in returned:
            try:
                C.get(str(c.get("id")))
            except KeyError:
                return None, "unknown_constraint"
        got = sorted(json.dumps([c.get("id"), c.get("kwargs") or {}], sort_keys=True) for c in returned)
        want = sorted(json.dumps([c.id, c.kwargs], sort_keys=True) for c in planned)
        if got != want:
            return None, "constraint_mismatch"
    return value.strip(), None


#: a first line that only announces the reply ("Rewritten instruction:", "Here is the new instruction:")
_LABEL = re.compile(r"^\s*(?:here is |here's )?(?:the )?(?:rewritten|new|evolved|harder|updated)?\s*"
                    r"(?:instruction|prompt|version)\s*(?:is)?\s*:\s*", re.I)


def parse_text_reply(text: str) -> tuple[str | None, str | None]:
    """The evolved instruction from a ``text`` reply: code fences, an announcing label and wrapping
    quotes removed (a JSON reply with an ``instruction`` field is taken too). (None, ``empty``) when
    nothing is left."""
    body = re.sub(r"```[a-z]*", "", text).strip()
    if body.startswith("{"):
        try:
            obj = json.loads(body)
            if isinstance(obj, dict) and isinstance(obj.get("instruction"), str):
                body = obj["instruction"]
        except ValueError:
            pass
    body = _LABEL.sub("", body, count=1).strip()
    if len(body) >= 2 and body[0] == body[-1] and body[0] in "\"'“”":
        body = body[1:-1].strip()
    return (body, None) if body else (None, "empty")


def _normalise(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def task_overlap(parent: str, evolved: str) -> float:
    """The share of the parent's content words (four letters or more) that the evolved instruction keeps."""
    words = set(re.findall(r"[a-z]{4,}", parent.lower()))
    return len(words & set(re.findall(r"[a-z]{4,}", evolved.lower()))) / len(words) if words else 1.0


def screen(parent: str, evolved: str, params: EvolveParams) -> str | None:
    """Elimination of a bad evolution step; returns the cause or None."""
    from rapidfuzz.distance import Levenshtein

    a, b = _normalise(parent), _normalise(evolved)
    if a == b:
        return "unchanged"
    if len(evolved) > params.max_instruction_chars:
        return "too_long"
    if evolved.lower().lstrip().startswith(_REFUSALS):
        return "refusal"
    if Levenshtein.normalized_distance(a, b) < params.min_edit_distance:
        return "near_duplicate"
    if task_overlap(parent, evolved) < params.min_task_overlap:
        return "lost_task"
    return None


def compose(parent: str, added: list[C.Constraint]) -> str:
    """The evolved instruction written by code: the parent with the requirements appended (what the
    programmatic teacher does, and the ``compose`` fallback when a model's reply is eliminated)."""
    return f"{parent.rstrip()} {' '.join(c.text for c in added)}"
