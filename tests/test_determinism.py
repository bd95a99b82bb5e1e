"""The default data half, twice from cold: byte-identical pairs, and enough hard negatives."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import make_project
from ecd import constraints as C
from ecd.pairs import load_pairs

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


def test_default_profile_gives_1000_verified_barely_missing_pairs(two_runs: tuple[Path, Path]) -> None:
    train = load_pairs(two_runs[0] / "data/pairs", "train").to_list()
    good = 0
    for row in train:
        cons = [C.Constraint(i, {k: v for k, v in kw.items() if v is not None})
                for i, kw in zip(row["instruction_id_list"], row["kwargs"])]
        chosen_ok = all(C.check(c, row["chosen"][0]["content"]) for c in cons)
        rejected = [C.check(c, row["rejected"][0]["content"]) for c in cons]
        added_missed = any(not ok for c, ok in zip(cons, rejected) if c.id in row["new_constraints"])
        barely = sum(rejected) / len(rejected) >= 0.5  # the default min_rejected_pass_fraction
        assert chosen_ok and added_missed and barely, row["id"]
        good += 1
    assert good >= 1000


def test_default_card_counts_match_the_data(two_runs: tuple[Path, Path]) -> None:
    import re

    from ecd.pairs import card_counts

    pairs = two_runs[0] / "data/pairs"
    counts = card_counts(load_pairs(pairs, "train").to_list(), load_pairs(pairs, "test").to_list())
    card = (pairs / "README.md").read_text()
    for name, table in counts.items():
        section = card.split(f"### Pairs per {name}\n")[1].split("###")[0]
        stated = {k: int(v) for k, v in re.findall(r"^\| (\S+) \| (\d+) \|$", section, re.M)}
        assert stated == table, name
