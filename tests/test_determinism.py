"""The default data half, twice from cold: byte-identical pairs, and enough hard negatives."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import make_project
from ecd import constraints as C
from ecd.pairing import load_pairs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Path, Path]:
    paths = []
    for name in ("a", "b"):
        proj = make_project(tmp_path_factory.mktemp(f"cold-{name}") / "proj")
        proj.run("dvc", "repro", "pair")
        paths.append(proj.path)
    return paths[0], paths[1]


def test_two_cold_runs_give_identical_pairs(two_runs: tuple[Path, Path]) -> None:
    a, b = two_runs
    files = sorted(f.name for f in (a / "data/pairs").iterdir())
    assert files == ["README.md", "test.parquet", "train.parquet"]
    for f in files:
        assert (a / "data/pairs" / f).read_bytes() == (b / "data/pairs" / f).read_bytes(), f


def test_default_profile_gives_300_verified_hard_negative_pairs(two_runs: tuple[Path, Path]) -> None:
    train = load_pairs(two_runs[0] / "data/pairs", "train").to_list()
    good = 0
    for row in train:
        cons = [C.Constraint(i, {k: v for k, v in kw.items() if v is not None})
                for i, kw in zip(row["instruction_id_list"], row["kwargs"])]
        chosen_ok = all(C.check(c, row["chosen"][0]["content"]) for c in cons)
        added_missed = any(not C.check(c, row["rejected"][0]["content"]) for c in cons if c.id in row["new_constraints"])
        assert chosen_ok and added_missed, row["id"]
        good += 1
    assert good >= 300
