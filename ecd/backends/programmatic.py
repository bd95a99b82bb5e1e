"""The programmatic teacher: constraint code that answers as a teacher would, with no model.

It evolves an instruction by appending a templated requirement, and answers by rewriting the seed's
reference answer until it satisfies every constraint (``ecd.constraints``' rewrites). It is domain
code behind the backend interface, not a language model: what lets the pipeline run offline on a CPU
in minutes, and a teacher whose answers are right by construction for the tests.
"""

from __future__ import annotations

import json

from ecd import constraints as C
from ecd.backends.base import Backend, Completion, OnDone, Request
from ecd.errors import EcdError
from ecd.params import ModelParams


class ProgrammaticTeacher(Backend):
    """Tasks it answers:

    - ``{"kind": "answer", "reference": str, "constraints": [...]}`` → the reference rewritten to
      satisfy every constraint (empty text, finish reason ``unanswerable``, where a rewrite is missing)
    - ``{"kind": "evolve", "instruction": str, "description": str, "constraints": [...]}`` → JSON
      ``{"instruction": ..., "constraints": [...]}`` with the requirement appended, the same reply
      format an LLM teacher is asked for.
    """

    name = "programmatic"
    cacheable = False
    samples_vary = False
    answers_by_rewriting = True

    def __init__(self, params: ModelParams | None = None) -> None:
        super().__init__(params or ModelParams())

    def identity(self) -> str:
        return "programmatic:v1"

    def sampling(self) -> dict[str, object]:
        return {}

    def generate(self, requests: list[Request], on_done: OnDone) -> None:
        for i, req in enumerate(requests):
            on_done(i, self._one(req))

    @staticmethod
    def _one(req: Request) -> Completion:
        task = req.task or {}
        if task.get("kind") == "answer":
            cons = [C.Constraint.from_record(c) for c in task["constraints"]]
            text = C.apply_rewrites(task["reference"], cons)
            return Completion("", "unanswerable") if text is None else Completion(text, "stop")
        if task.get("kind") == "evolve":
            evolved = f"{task['instruction'].rstrip()} {task['description']}"
            if task.get("reply_format", "json") == "text":
                return Completion(evolved)
            reply = {"instruction": evolved, "constraints": task.get("constraints", [])}
            return Completion(json.dumps(reply, ensure_ascii=False))
        raise EcdError("the programmatic teacher got a request without a task it knows")
