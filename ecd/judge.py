"""The judge: a model asked strict questions, through the same backends and call cache as the teacher.

Two uses, both parsed strictly (a reply that is not exactly the expected word is *unparsable*,
counted, and never read as a pass) and both keeping the judge's raw reply for audit:

- **constraints code cannot check** (``judge:*`` types): one yes/no question per constraint and response;
- **win rate** in evaluation: which of two answers follows an instruction better, asked in both
  orders so that the judge's position bias cancels.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from ecd import constraints as C
from ecd.backends import Backend, Request, RunStats, generate_cached
from ecd.records import content_id
from ecd.schema import user

TEMPLATE_VERSION = "judge-v1"

CONSTRAINT_PROMPT = """You check whether a response meets one requirement. Judge only that requirement.

Requirement question: {question}

Response:
<<<
{response}
>>>

Reply with exactly one word: yes or no."""

PAIRWISE_PROMPT = """You compare two responses to the same instruction. Pick the one that follows the
instruction better: correct, complete, and doing what was asked. Ignore which one is longer.

Instruction:
<<<
{instruction}
>>>

Response A:
<<<
{a}
>>>

Response B:
<<<
{b}
>>>

Reply with exactly one letter: A or B."""


def _word(text: str) -> str:
    return re.sub(r"[\s.!*\"'`]+$", "", re.sub(r"^[\s*\"'`]+", "", text)).lower()


def parse_yes_no(text: str) -> bool | None:
    """``yes`` → True, ``no`` → False (case, surrounding quotes/markup and a final full stop
    ignored); anything else → None."""
    return {"yes": True, "no": False}.get(_word(text))


def parse_choice(text: str) -> str | None:
    """``A`` or ``B`` (case, quotes/markup and a final full stop ignored); anything else → None."""
    w = _word(text)
    return w.upper() if w in ("a", "b") else None


def judge_key(text: str, constraint: C.Constraint) -> str:
    return content_id(text, constraint.id, constraint.kwargs)


def judge_constraints(
    backend: Backend, items: list[tuple[str, C.Constraint]], description: str = "judge", check_failures: bool = True
) -> tuple[dict[str, dict[str, Any]], RunStats]:
    """Ask the judge about every (response text, constraint) once; results keyed by ``judge_key``.

    A result is ``{"passed", "method": "judge", "judge_reply", "judge_parse": "ok"|"unparsable"}``.
    """
    unique: dict[str, tuple[str, C.Constraint]] = {}
    for text, c in items:
        unique.setdefault(judge_key(text, c), (text, c))
    keys = sorted(unique)
    requests = []
    for k in keys:
        text, c = unique[k]
        question = c.type.judge_question(c.kwargs)
        requests.append(Request(messages=user(CONSTRAINT_PROMPT.format(question=question, response=text))))
    completions, stats = generate_cached(backend, requests, template_version=TEMPLATE_VERSION, description=description,
                                         check_failures=check_failures)
    out = {}
    for k, comp in zip(keys, completions):
        verdict = parse_yes_no(comp.text)
        out[k] = {
            "passed": bool(verdict),
            "method": "judge",
            "judge_reply": comp.text,
            "judge_parse": "ok" if verdict is not None else "unparsable",
        }
    return out, stats


def win_rate(
    backend: Backend, items: list[dict[str, str]], label: str
) -> tuple[dict[str, float | int], list[dict[str, Any]]]:
    """Pairwise judgement of ``answer`` against ``reference`` for ``{"instruction", "answer", "reference"}``
    items, each asked in both orders.

    An item is a win when the judge prefers the answer in both orders, a loss when it prefers the
    reference in both, a tie otherwise; an item with an unparsable reply in either order is left out
    of the rate and counted. Win rate = (wins + ties / 2) / judged items.
    """
    requests = []
    for it in items:
        for a, b in ((it["answer"], it["reference"]), (it["reference"], it["answer"])):
            prompt = PAIRWISE_PROMPT.format(instruction=it["instruction"], a=a, b=b)
            requests.append(Request(messages=user(prompt)))
    completions, _ = generate_cached(backend, requests, template_version=TEMPLATE_VERSION, description=f"judge {label}")
    outcomes: Counter[str] = Counter()
    records = []
    for k, it in enumerate(items):
        first, second = completions[2 * k].text, completions[2 * k + 1].text
        c1, c2 = parse_choice(first), parse_choice(second)
        if c1 is None or c2 is None:
            outcome = "unparsable"
        else:
            answer_wins = (c1 == "A") + (c2 == "B")
            outcome = {2: "win", 1: "tie", 0: "loss"}[answer_wins]
        outcomes[outcome] += 1
        records.append({**it, "judge_replies": [first, second], "outcome": outcome})
    judged = outcomes["win"] + outcomes["tie"] + outcomes["loss"]
    summary: dict[str, float | int] = {
        "win_rate": (outcomes["win"] + outcomes["tie"] / 2) / judged if judged else 0.0,
        "wins": outcomes["win"], "ties": outcomes["tie"], "losses": outcomes["loss"],
        "unparsable": outcomes["unparsable"], "judged": judged,
    }
    return summary, records
