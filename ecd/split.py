"""The train/test split by seed instruction, computed once by the ``split`` stage.

Every chain of a seed lands on one side, so no held-out prompt shares a seed with a training pair.
The split is drawn over every seed with a usable answer (round 0's state), before any evolution,
so that the student's tokenizer, SFT and every pair strategy hold out the same seeds; the other
stages read ``data/split.json`` rather than drawing it again.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from ecd import layout
from ecd.errors import EcdError
from ecd.records import write_json
from ecd.schema import Split, State


def split_roots(root_ids: list[str], test_fraction: float, seed: int) -> set[str]:
    """The roots held out for testing: a seeded shuffle of the sorted ids."""
    roots = sorted(set(root_ids))
    random.Random(seed).shuffle(roots)
    return set(roots[: round(len(roots) * test_fraction)])


def make_split(r0_state: list[State], test_fraction: float, seed: int) -> Split:
    """The split of the seeds in round 0's state."""
    roots = sorted({s["root_id"] for s in r0_state})
    test = split_roots(roots, test_fraction, seed)
    return {"test_fraction": test_fraction, "seed": seed,
            "train_roots": [r for r in roots if r not in test], "test_roots": sorted(test)}


def save_split(split: Split, path: Path = layout.SPLIT) -> None:
    write_json(path, split)


def load_split(path: Path = layout.SPLIT) -> Split:
    """The split the ``split`` stage wrote; a clear error when it has not run or the file is damaged."""
    if not path.exists():
        raise layout.missing_input(path)
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise EcdError(f"{path}: not a split file ({exc})") from None
    if not isinstance(data, dict) or not {"train_roots", "test_roots"} <= set(data):
        raise EcdError(f"{path}: not a split file (expected train_roots and test_roots)")
    return data  # type: ignore[return-value]


def test_roots(path: Path = layout.SPLIT) -> set[str]:
    """The held-out seeds."""
    return set(load_split(path)["test_roots"])
