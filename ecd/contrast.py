"""Contrast: when the answer to the easier instruction is a hard negative for the harder one.

R(t-1) was written for I(t-1). It is a *hard negative* for I(t) when it misses at least one
requirement, at least one of the requirements I(t) added is among those missed, and it still meets
a given share of I(t)'s requirements (it "barely misses"). Evolution draws requirements that R(t-1)
misses, verification counts the steps where the property holds, and pairing keeps only such pairs:
all three ask this one function.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def pass_fraction(results: Sequence[Any]) -> float:
    """The share of constraint results that passed (1.0 for none)."""
    return sum(r["passed"] for r in results) / len(results) if results else 1.0


def hard_negative_flaw(results: Sequence[Any], new_constraints: Sequence[str], min_missed: int = 1,
                       min_pass_fraction: float = 0.0) -> str | None:
    """Why the answer with these per-constraint ``results`` (``{"id", "passed"}``) is not a hard
    negative for an instruction that added ``new_constraints``, or None when it is one.

    Causes: ``rejected_passes`` (it misses fewer than ``min_missed``),
    ``rejected_misses_only_old_constraints`` (none of the added ones is missed),
    ``rejected_misses_too_much`` (it passes less than ``min_pass_fraction``).
    """
    missed = {r["id"] for r in results if not r["passed"]}
    if len([r for r in results if not r["passed"]]) < min_missed:
        return "rejected_passes"
    if not missed & set(new_constraints):
        return "rejected_misses_only_old_constraints"
    if pass_fraction(results) < min_pass_fraction:
        return "rejected_misses_too_much"
    return None
