"""Where every stage reads and writes: one place, so stages and tests agree on paths."""

from __future__ import annotations

from pathlib import Path

DATA = Path("data")
SEEDS_LICENSE = DATA / "self-instruct" / "LICENSE"
ROUNDS = DATA / "rounds"
PAIRS = DATA / "pairs"
EVAL = DATA / "eval"
MODELS = Path("models")
METRICS = Path("metrics")
PLOTS = Path("plots")
WORK = Path(".ecd") / "work"


def round_file(round_name: str, name: str) -> Path:
    """``data/rounds/<round>/<name>``: instructions, chains, responses, verdicts, state, steps."""
    return ROUNDS / round_name / name


def round_metrics(round_name: str, stage: str) -> Path:
    return METRICS / "rounds" / round_name / f"{stage}.json"
