"""The constraint library shared by evolution, verification, pairing and evaluation.

One class per instruction type, as in IFEval's registry: each type knows how to sample its own
parameters, phrase the requirement, check a response (by code, exactly — or, for requirements code
cannot check, by the yes/no question a judge model is asked), and where one exists rewrite a text
so that it satisfies the requirement. Type ids and kwargs follow IFEval's schema
(``punctuation:no_comma``, ``{"num_bullets": 3}``), so our data carries ``instruction_id_list`` and
``kwargs`` that IFEval's own tooling reads.

- ``ifeval``: IFEval's 25 types with IFEval's semantics, strict and loose.
- ``extra``: ecd's code-checkable additions (``ecd:*`` ids).
- ``judged``: requirements only a judge model can check (tone, audience, persona, reasoning depth).
- ``ifbench``: IFBench's 58 out-of-distribution types, evaluation-only (never drawn by evolution
  unless ``evolve.allow_held_out_types``).

Rewrites are what lets the ``programmatic`` teacher answer evolved instructions without a model: a
response to I(t) is the seed's reference answer with the rewrites of all of I(t)'s constraints
applied in ``phase`` order.
"""

from ecd.constraints import extra, ifbench, ifeval, judged  # noqa: F401  (registers the types)
from ecd.constraints.base import (
    REGISTRY,
    Constraint,
    all_types,
    ConstraintType,
    JudgeRequired,
    ResourceMissing,
    SampleContext,
    apply_rewrites,
    check,
    clean_kwargs,
    compatible,
    follow_list,
    get,
    loose_variants,
    register,
    rewritable_types,
    taxonomy,
)
from ecd.constraints.text import content_words, count_sentences, count_words, detect_language, split_sentences

__all__ = [
    "REGISTRY", "Constraint", "all_types", "ConstraintType", "JudgeRequired", "ResourceMissing", "SampleContext", "apply_rewrites", "check",
    "clean_kwargs", "compatible", "follow_list", "content_words", "count_sentences", "count_words", "detect_language", "get", "loose_variants",
    "register", "rewritable_types", "split_sentences", "taxonomy",
]
