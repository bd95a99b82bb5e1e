"""The constraint library as rewards for online training, in TRL's reward-function interface.

GRPO samples several answers to each instruction, scores every answer, and moves the policy toward
the answers that score above their group's mean. These functions score with the exact checks that
verify the teacher's answers and evaluate the students (IFEval's strict semantics), so a GRPO run
and a preference run are judged by one evidence. TRL calls each with the prompts, the completions and
the dataset's other columns as keyword arguments; here those are ``instruction_id_list`` and
``kwargs`` (IFEval's, as in the pair table) and ``reference`` (the verified answer to the same
instruction). Each returns one float per completion::

    GRPOTrainer(model, reward_funcs=[constraint_share, all_constraints, task_guard], ...)

Checks alone teach a model to satisfy the constraint and drop the task (the IFBench paper saw it):
an answer that is only ``"<<Title>>"`` in lowercase meets a title and a case. ``task_guard`` scores
what the checks cannot see, the answer's agreement with the verified reference: the share of the
reference's content words it keeps, times a band on its length.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from ecd.constraints import content_words, count_words, follow_list

#: the answer's length in words, as a multiple of the reference's, where ``task_guard`` gives full
#: weight; outside it the weight falls linearly, to 0 at an empty answer and at ``LENGTH_CEILING``
LENGTH_BAND = (0.5, 2.0)
LENGTH_CEILING = 4.0


def message_text(messages: Any, role: str) -> str:
    """The text of ``role``'s messages in a conversation, or the text itself when it is plain."""
    if isinstance(messages, str):
        return messages
    return "".join(m.get("content") or "" for m in messages if m.get("role", role) == role)


def completion_text(completion: Any) -> str:
    """The text of a completion, conversational (``[{"role": "assistant", "content": ...}]``) or plain."""
    return message_text(completion, "assistant")


@functools.lru_cache(maxsize=4096)
def _checked(text: str, ids: tuple[str, ...], kwargs_json: str) -> tuple[bool, ...]:
    # constraint_share and all_constraints score the same answers in one step: checked once
    return tuple(v is True for v in follow_list(text, ids, json.loads(kwargs_json)))


def _verdicts(completions: Sequence[Any], columns: Mapping[str, Any]) -> list[tuple[bool, ...]]:
    ids, kwargs = columns["instruction_id_list"], columns["kwargs"]
    return [_checked(completion_text(c), tuple(i), json.dumps(k, sort_keys=True)) for c, i, k in zip(completions, ids, kwargs)]


def constraint_share(prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
    """The share of the instruction's constraints the completion meets (strict; an empty answer meets none)."""
    return [sum(v) / len(v) if v else 0.0 for v in _verdicts(completions, columns)]


def all_constraints(prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
    """1.0 when the completion meets every constraint of its instruction (IFEval's prompt-level strict), else 0.0."""
    return [1.0 if v and all(v) else 0.0 for v in _verdicts(completions, columns)]


def length_band(words: int, reference_words: int) -> float:
    """1.0 inside ``LENGTH_BAND`` × the reference's length, falling linearly to 0 at 0 words and at
    ``LENGTH_CEILING`` ×."""
    if reference_words <= 0:
        return 1.0 if words else 0.0
    ratio = words / reference_words
    low, high = LENGTH_BAND
    if ratio < low:
        return ratio / low
    if ratio <= high:
        return 1.0
    return max(0.0, (LENGTH_CEILING - ratio) / (LENGTH_CEILING - high))


def task_guard(prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
    """Against meeting the constraints while dropping the task: the share of the reference answer's
    content words the completion uses, times ``length_band``. Where a row has no reference, the
    instruction's own content words stand in for it and the length band is not applied."""
    references = columns.get("reference") or [None] * len(completions)
    out = []
    for prompt, completion, reference in zip(prompts, completions, references):
        text = completion_text(completion)
        used = set(content_words(text, min_len=3))
        wanted = content_words(reference or message_text(prompt, "user"), min_len=3)
        recall = sum(w in used for w in wanted) / len(wanted) if wanted else 1.0
        band = length_band(count_words(text), count_words(reference)) if reference else (1.0 if text.strip() else 0.0)
        out.append(recall * band)
    return out


#: the reward functions by the names ``train.grpo.reward_weights`` uses
REWARD_FUNCTIONS = {"constraint_share": constraint_share, "all_constraints": all_constraints, "task_guard": task_guard}
