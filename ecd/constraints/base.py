"""The registry: one class per constraint type, and how instances are checked and composed."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ecd.schema import ConstraintRecord


@dataclass(frozen=True)
class SampleContext:
    """What a sampler may look at: the instruction so far and the current best response to it."""

    instruction: str
    response: str
    title: str = ""


class ConstraintType:
    """One constraint type, registered by id (``@register``), as IFEval's registry holds its checkers.

    To add a type: subclass, set ``id``, ``category`` and ``templates``, implement ``check`` (and
    ``sample`` for parameters, ``rewrite`` where the programmatic teacher can meet it), decorate
    with ``@register``. Each module names the ranges its samplers draw from as constants at its top
    (IFEval's ``_MAX_NUM_SENTENCES`` and kin); ``tests/test_constraints.py`` checks every registered
    type's sampled requirement against its own ``check`` and ``rewrite``.
    """

    id: ClassVar[str]
    #: taxonomy path: branch/sub-type, e.g. ``format/layout``
    category: ClassVar[str]
    #: where the rewrite runs when several are composed (lower first)
    phase: ClassVar[int] = 50
    #: ids of types this one is never combined with
    conflicts: ClassVar[frozenset[str]] = frozenset()
    #: checkable by code (True) or only by an LLM judge (False)
    verifiable: ClassVar[bool] = True
    #: IFEval's own type (True) or one of ecd's additions
    ifeval: ClassVar[bool] = True
    templates: ClassVar[tuple[str, ...]] = ()
    #: for judge-checked types: the exact yes/no question put to the judge model
    question: ClassVar[str] = ""
    #: a held-out test type (IFBench's): evaluation only, never drawn by evolution unless
    #: ``evolve.allow_held_out_types`` says so
    held_out: ClassVar[bool] = False

    @property
    def group(self) -> str:
        """The group an evaluation reports the type under: its taxonomy branch (IFBench: its id's prefix)."""
        return self.category.split("/")[0]

    def sample(self, rng: random.Random, ctx: SampleContext) -> dict[str, Any] | None:
        """Draw this type's parameters for a new requirement.

        Args:
            rng: the chain's own generator (``evolve.seed``, round, chain): the same draw every run.
            ctx: the instruction so far and the current answer, so that a requirement can be one
                the answer misses (a word count above its length, a keyword it lacks).

        Returns:
            The kwargs (IFEval's names for IFEval's types), or None when no requirement of this
            type fits the context.
        """
        return {}

    def describe(self, kwargs: dict[str, Any], rng: random.Random) -> str:
        """The requirement in words, as an instruction states it.

        Args:
            kwargs: the parameters ``sample`` drew.
            rng: picks one of ``templates``.

        Returns:
            The sentence appended to or woven into the instruction.
        """
        return rng.choice(self.templates).format(**self.format_args(kwargs))

    def format_args(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return dict(kwargs)

    def check(self, response: str, kwargs: dict[str, Any]) -> bool:
        """Whether ``response`` meets the requirement, with IFEval's strict semantics.

        Args:
            response: the model's answer, as it came (loose scoring strips and trims it first).
            kwargs: the requirement's parameters.

        Returns:
            True if the response follows the requirement.

        Raises:
            JudgeRequired: the type is judge-checked (``verifiable`` False).
            ResourceMissing: a language resource the check needs is not installed.
        """
        raise JudgeRequired(self.id)

    def judge_question(self, kwargs: dict[str, Any]) -> str:
        """The yes/no question a judge model answers for this requirement (judge-checked types)."""
        return self.question.format(**self.format_args(kwargs))

    def rewrite(self, text: str, kwargs: dict[str, Any]) -> str | None:
        """The programmatic teacher's answer: ``text`` changed as little as it can be for ``check`` to hold.

        Args:
            text: an answer (the seed's reference, already rewritten for the constraints of lower ``phase``).
            kwargs: the requirement's parameters.

        Returns:
            The rewritten text, or None where this type has no rewrite (evolution then draws it
            only for teachers that are models).
        """
        return None

    @property
    def has_rewrite(self) -> bool:
        return type(self).rewrite is not ConstraintType.rewrite

    def words(self, kwargs: dict[str, Any]) -> set[str]:
        """Lowercase words this constraint puts into a response (kept clear of forbidden words)."""
        return set()


class JudgeRequired(Exception):
    """Raised by ``check`` for a requirement that only a judge model can check."""


class ResourceMissing(Exception):
    """Raised by ``check`` when a language resource the check needs is not installed: the
    instruction is reported as not scored, never guessed."""


REGISTRY: dict[str, ConstraintType] = {}
FORBIDDEN_WORDS = "keywords:forbidden_words"


def register(cls: type[ConstraintType]) -> type[ConstraintType]:
    REGISTRY[cls.id] = cls()
    return cls


def get(type_id: str) -> ConstraintType:
    try:
        return REGISTRY[type_id]
    except KeyError:
        from ecd.errors import did_you_mean

        raise KeyError(f"unknown constraint type {type_id!r}{did_you_mean(type_id, list(REGISTRY))}") from None


def relation_ok(actual: int, relation: str, threshold: int) -> bool:
    if relation == "less than":
        return actual < threshold
    if relation == "at least":
        return actual >= threshold
    raise ValueError(f"relation must be 'less than' or 'at least', not {relation!r}")



@dataclass(frozen=True)
class Constraint:
    """A constraint instance: a type id and its kwargs, as stored in instruction records."""

    id: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    text: str = ""
    verifiable: bool = True

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> "Constraint":
        return cls(id=rec["id"], kwargs=dict(rec.get("kwargs") or {}), text=rec.get("text", ""),
                   verifiable=rec.get("verifiable", True))

    def to_record(self) -> ConstraintRecord:
        return {"id": self.id, "kwargs": self.kwargs, "text": self.text, "verifiable": self.verifiable}

    @property
    def type(self) -> ConstraintType:
        return get(self.id)


def loose_variants(response: str) -> list[str]:
    """IFEval's loose variants: first and/or last line dropped, and each with ``*`` removed."""
    lines = response.split("\n")
    first = "\n".join(lines[1:]).strip()
    last = "\n".join(lines[:-1]).strip()
    both = "\n".join(lines[1:-1]).strip()
    base = [response, first, last, both]
    return base[:1] + [response.replace("*", "")] + base[1:] + [v.replace("*", "") for v in base[1:]]


def check(constraint: Constraint, response: str, loose: bool = False) -> bool:
    """Whether ``response`` follows ``constraint`` (IFEval strict or loose). Empty responses fail."""
    ctype = constraint.type
    if not ctype.verifiable:
        raise JudgeRequired(constraint.id)
    variants = loose_variants(response) if loose else [response]
    return any(v.strip() and ctype.check(v, constraint.kwargs) for v in variants)


def clean_kwargs(kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """Kwargs as IFEval's evaluation passes them: the unset (None) fields of the union schema dropped."""
    return {k: v for k, v in (kwargs or {}).items() if v is not None}


def follow_list(response: str, ids: Sequence[str], kwargs: Sequence[Mapping[str, Any] | None],
                loose: bool = False) -> list[bool | None]:
    """Each instruction's verdict (IFEval's ``follow_instruction_list``); None where a language
    resource the check needs is not installed (``ResourceMissing``): reported apart, never guessed."""
    out: list[bool | None] = []
    for i, k in zip(ids, kwargs):
        try:
            out.append(check(Constraint(i, clean_kwargs(k)), response, loose=loose))
        except ResourceMissing:
            out.append(None)
    return out


def compatible(existing: list[Constraint], type_id: str, kwargs: dict[str, Any]) -> bool:
    """Whether a new constraint can join ``existing``: no declared conflict, no duplicate type,
    and no word that one forbids while another needs it."""
    new = get(type_id)
    for c in existing:
        if c.id == type_id or c.id in new.conflicts or type_id in c.type.conflicts:
            return False
    forbidden = {w for c in existing if c.id == FORBIDDEN_WORDS for w in c.kwargs["forbidden_words"]}
    if forbidden & new.words(kwargs):
        return False
    if type_id == FORBIDDEN_WORDS:
        needed = set().union(*(c.type.words(c.kwargs) for c in existing)) if existing else set()
        if needed & set(kwargs["forbidden_words"]):
            return False
    return True


def apply_rewrites(text: str, constraints: list[Constraint]) -> str | None:
    """Compose the rewrites of all constraints in phase order; None if one type has no rewrite
    or cannot apply to this text."""
    for c in sorted(constraints, key=lambda c: (c.type.phase, c.id)):
        out = c.type.rewrite(text, c.kwargs)
        if out is None:
            return None
        text = out
    return text


def all_types() -> list[str]:
    return sorted(REGISTRY)


def rewritable_types() -> list[str]:
    """Ids of the types the programmatic teacher can both ask for and answer."""
    return sorted(t.id for t in REGISTRY.values() if t.has_rewrite and t.verifiable)


def taxonomy() -> dict[str, dict[str, list[str]]]:
    """The taxonomy tree: branch → sub-type → constraint type ids."""
    tree: dict[str, dict[str, list[str]]] = {}
    for t in sorted(REGISTRY.values(), key=lambda t: (t.category, t.id)):
        branch, sub = t.category.split("/", 1)
        tree.setdefault(branch, {}).setdefault(sub, []).append(t.id)
    return tree
