"""Evolutionary Contrastive Distillation as a DVC pipeline (``dvc repro``), with a Python API:
``ecd.read_round``, ``ecd.read_pairs``, ``ecd.check``, ``ecd.benchmark_prompts``, ``ecd.score_benchmark``,
``ecd.make_pairs`` and ``ecd.cache_stats`` (``ecd.api``; docs/api.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ecd.api import benchmark_prompts, cache_stats, check, make_pairs, read_pairs, read_round, score_benchmark

__all__ = ["benchmark_prompts", "cache_stats", "check", "make_pairs", "read_pairs", "read_round", "score_benchmark"]


def __getattr__(name: str) -> Any:
    # loaded on first use: every stage imports ecd, and most need none of this
    if name in __all__:
        from ecd import api

        return getattr(api, name)
    raise AttributeError(f"module 'ecd' has no attribute {name!r}")
