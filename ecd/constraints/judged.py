"""Requirements that code cannot check: tone, audience, persona, depth of reasoning, breadth.

Each is typed ``verifiable = False`` and carries the exact yes/no question a judge model is asked;
``check`` raises ``JudgeRequired``. The evolution taxonomy can ask for them; only a judge verifies them.
"""

from __future__ import annotations

from ecd.constraints.base import ConstraintType, register


class _Judged(ConstraintType):
    """A type only a judge model checks: ``check`` raises ``JudgeRequired``; the judge answers ``question``."""

    verifiable = False
    ifeval = False


@register
class Tone(_Judged):
    """A tone held throughout, checked by a judge model.

    Args:
        tone: one of ``tones``.
    """

    id = "judge:tone"
    category = "style/tone"
    tones = ("formal", "friendly", "enthusiastic", "neutral and factual", "humorous")
    templates = ("Write your answer in a {tone} tone.", "Keep the tone of the whole answer {tone}.")
    question = "Is the whole response written in a {tone} tone? Answer yes or no."

    def sample(self, rng, ctx):
        return {"tone": rng.choice(self.tones)}


@register
class Audience(_Judged):
    """Written for a given reader, checked by a judge model.

    Args:
        audience: one of ``audiences``.
    """

    id = "judge:audience"
    category = "content/audience"
    audiences = ("a ten-year-old child", "a domain expert", "a busy executive", "a non-native English speaker")
    templates = ("Write for {audience}.", "Make sure {audience} can follow your answer.")
    question = "Is the response written so that {audience} can easily understand it? Answer yes or no."

    def sample(self, rng, ctx):
        return {"audience": rng.choice(self.audiences)}


@register
class Persona(_Judged):
    """Written in a persona's voice, checked by a judge model.

    Args:
        persona: one of ``personas``.
    """

    id = "judge:persona"
    category = "style/persona"
    personas = ("a museum tour guide", "a sports commentator", "a patient teacher", "a ship's captain")
    templates = ("Answer in the voice of {persona}.", "Respond as if you were {persona}.")
    question = "Is the response written in the voice of {persona}? Answer yes or no."

    def sample(self, rng, ctx):
        return {"persona": rng.choice(self.personas)}


@register
class ReasoningDepth(_Judged):
    """The reasoning behind the answer, not only the answer, checked by a judge model."""

    id = "judge:reasoning_depth"
    category = "reasoning/depth"
    templates = (
        "Explain the reasoning behind your answer, not only the answer.",
        "Justify each claim you make with a reason.",
    )
    question = "Does the response explain the reasoning behind its answer rather than only stating it? Answer yes or no."


@register
class ConcreteExample(_Judged):
    """At least one concrete example, checked by a judge model."""

    id = "judge:concrete_example"
    category = "content/examples"
    templates = ("Include at least one concrete example.", "Illustrate your answer with a specific example.")
    question = "Does the response include at least one concrete, specific example? Answer yes or no."


@register
class Perspectives(_Judged):
    """Two or more perspectives weighed, checked by a judge model."""

    id = "judge:perspectives"
    category = "breadth/perspectives"
    templates = (
        "Consider at least two different perspectives before concluding.",
        "Discuss two alternative viewpoints or options.",
    )
    question = "Does the response consider at least two different perspectives or options? Answer yes or no."
