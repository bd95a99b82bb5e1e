"""The data half as it runs at scale (``ecd.rounds``, ``ecd.workers``, ``ecd.pair_stream``): a chunk of
seeds at a time, over worker processes, pairs held as stubs. On a real run of the data half
(``dvc repro pair``, the programmatic teacher), none of that may change a byte: the round files are the
same with one process and tiny chunks as with two workers, and the pairs streamed from the files are
the pairs ``build_pairs`` makes from every step in memory, for every strategy. (Memory and speed at
52,500 seeds are ``bench/scale.py``'s to measure.)"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import Project, make_project
from ecd.pair_stream import build_stubs, whole_pair
from ecd.pairing import build_pairs, strategy_pairs, weak_instructions
from ecd.params import PairParams
from ecd.records import content_id
from ecd.rounds import Rounds
from ecd.schema import Instruction, Response
from ecd.verification import check_all

ROUNDS = ["r1", "r2"]


@pytest.fixture(scope="module")
def data_half(tmp_path_factory) -> Project:
    project = make_project(tmp_path_factory.mktemp("scale") / "project", {
        "seeds": {"limit": 20}, "evolve": {"chains_per_seed": 3}, "rounds": {r: {"prev": f"r{int(r[1:]) - 1}"} for r in ROUNDS},
        "split": {"test_fraction": 0.25}})
    project.commit("20 seeds, 2 rounds")
    project.run("dvc", "repro", "pair", timeout=1200, env={"ECD_WORKERS": "2"})
    return project


def test_chunks_and_workers_change_no_byte(data_half: Project, tmp_path: Path) -> None:
    p = data_half.path
    before = {f.relative_to(p): f.read_bytes() for d in ("data/rounds", "metrics/rounds") for f in (p / d).rglob("*.json*")}
    assert len(before) == 4 + 2 * 6 + 2 + 2 * 3  # round files (r0 four, r1 and r2 six each) and their metrics
    pairs = [p / "data/pairs/train.parquet", p / "data/pairs/test.parquet", p / "data/rows.parquet"]
    before.update({f.relative_to(p): f.read_bytes() for f in pairs})
    env = {"ECD_WORKERS": "1", "ECD_CHUNK_SEEDS": "2"}
    data_half.run(sys.executable, "stages/verify.py", "r0", env=env)
    for r in ROUNDS:
        for stage in ("evolve", "sample", "verify"):
            data_half.run(sys.executable, f"stages/{stage}.py", r, env=env)
    data_half.run(sys.executable, "stages/pair.py", env=env)
    after = {f: (p / f).read_bytes() for f in before}
    assert [str(f) for f in before if before[f] != after[f]] == []
    roots = (p / "data/rounds/r0/state.jsonl").read_text().splitlines()
    assert len((p / "data/rounds/r2/state.jsonl").read_text().splitlines()) == 3 * len(roots) > 40  # three chains a seed


def _weak_rule(instructions: list[Instruction]) -> dict[str, Response]:
    """Weak answers made by a rule (test data standing in for a weak model's samples): the
    instruction's first words, which miss most of what it asks."""
    out = {}
    for inst in instructions:
        text = " ".join(inst["text"].split()[:6]).lower()
        out[inst["id"]] = {"id": content_id(inst["id"], "rule", text), "instruction_id": inst["id"], "model": "rule:v1",
                           "sample": 0, "text": text, "finish_reason": "stop", "prompt_tokens": 0, "completion_tokens": 0}
    return out  # type: ignore[return-value]


@pytest.mark.parametrize("pair_params", [
    {"strategy": ["ecd", "random"], "match": ["ecd", "random"]},
    {"strategy": ["ecd", "random", "model_gap"], "match": ["ecd", "random", "model_gap"], "weak_limit": 25},
    {"strategy": ["model_gap", "ecd"], "match": [], "curriculum": "missed"},
    {"strategy": ["seed_answer"], "match": ["ecd", "random"]},
])
@pytest.mark.parametrize("workers", [1, 2])
def test_streamed_pairs_are_the_pairs_made_in_memory(data_half: Project, pair_params: dict[str, Any], workers: int) -> None:
    params = PairParams.model_validate(pair_params)
    rounds = Rounds(data_half.path / "data/rounds")
    test_roots = set(json.loads((data_half.path / "data/split.json").read_text())["test_roots"])
    steps = [s for r in ROUNDS for s in rounds.steps(r)]
    weak = None
    if "model_gap" in params.strategy:  # what ecd.pairing.weak_answers asks the weak model, answered by the rule
        pool = steps
        others = [s for s in params.match if s != "model_gap"]
        if "model_gap" in params.match and others:
            common = set.intersection(*[{p["instruction_id"] for p in strategy_pairs(s, steps, params, check_all, None)[0]}
                                        for s in others])
            pool = [s for s in steps if s["instruction"]["id"] in common]
        weak = _weak_rule(weak_instructions(pool, params))
    train, test, metrics = build_pairs(steps, params, test_roots, check_all, weak)
    asked: list[list[Instruction]] = []

    def sample_weak(instructions: list[Instruction]) -> dict[str, Response]:
        asked.append(instructions)
        return _weak_rule(instructions)

    s_train, s_test, s_metrics, s_weak = build_stubs(rounds, ROUNDS, params, test_roots, check_all, sample_weak, per_chunk=3,
                                                     workers=workers)
    by_id = {r["id"]: r for r in s_weak.values()}
    assert s_metrics == metrics and metrics["train_pairs"] > 20
    assert [whole_pair(s, rounds, by_id, ROUNDS) for s in s_train] == train
    assert [whole_pair(s, rounds, by_id, ROUNDS) for s in s_test] == test
    assert (weak is None) == (asked == []) and (weak is None or {i["id"] for i in asked[0]} == set(weak))
    if "model_gap" in params.strategy:
        assert metrics["pairs_by_strategy"].get("model_gap", 0) > 0


def test_the_pair_stage_writes_what_save_pairs_writes(data_half: Project, tmp_path: Path) -> None:
    """The stage's files, streamed through an Arrow file on disk, are byte for byte those of
    ``save_pairs``/``save_rows`` given the same pairs whole."""
    from ecd.pairs import load_pairs, save_pairs, save_rows

    p = data_half.path
    train, test = load_pairs(p / "data/pairs", "train").to_list(), load_pairs(p / "data/pairs", "test").to_list()
    save_pairs(tmp_path / "pairs", train, test, (p / "data/pairs/README.md").read_text())
    save_rows(tmp_path / "rows.parquet", train)
    for name in ("train.parquet", "test.parquet", "README.md"):
        assert (tmp_path / "pairs" / name).read_bytes() == (p / "data/pairs" / name).read_bytes(), name
    assert (tmp_path / "rows.parquet").read_bytes() == (p / "data/rows.parquet").read_bytes()
    shutil.rmtree(tmp_path / "pairs")


def test_parquet_written_from_a_stream_is_datasets_own_in_row_groups_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pair stage reads its Arrow file as a stream, not a memory map; with row groups cut small
    (datasets' 100 MB made 20 kB) the Parquet file still has datasets' own bytes, group for group."""
    import pyarrow.parquet as pq
    from datasets import Dataset, config
    from datasets.arrow_writer import ArrowWriter

    from ecd import pair_stream
    from ecd.pairs import features

    monkeypatch.setattr(config, "MAX_ROW_GROUP_SIZE", "20KB")
    feats = features()
    rows = [{name: None for name in feats} | {"id": f"{k:016x}", "prompt": [{"role": "user", "content": "word " * (k % 37)}],
                                             "kwargs": [{"num_words": k}], "round": k % 4, "instruction_id_list": ["a"] * (k % 3)}
            for k in range(2_500)]
    arrow = tmp_path / "rows.arrow"
    with ArrowWriter(features=feats, path=str(arrow), writer_batch_size=1000) as writer:
        for row in rows:
            writer.write(row)
        writer.finalize()
    Dataset.from_file(str(arrow)).to_parquet(str(tmp_path / "datasets.parquet"))
    pair_stream._parquet_from_arrow(arrow, tmp_path / "stream.parquet", feats)
    assert pq.ParquetFile(tmp_path / "datasets.parquet").num_row_groups > 3
    assert (tmp_path / "stream.parquet").read_bytes() == (tmp_path / "datasets.parquet").read_bytes()


def test_the_record_index_finds_every_record_of_a_key_in_file_order_and_tells_shared_hashes_apart(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ecd import record_index as R

    path = tmp_path / "records.jsonl"
    path.write_text('{"id":"a","v":1}\n\n{"id":"b","v":2}\n{"id":"a","v":3}\n')
    index = R.RecordFile(path)
    assert len(index) == 2 and index.all("a") == [{"id": "a", "v": 1}, {"id": "a", "v": 3}]
    assert index.get("b") == {"id": "b", "v": 2} and index.get("c") is None and "c" not in index
    monkeypatch.setattr(R, "_hash64", lambda value: 7)  # every key one hash: the records decide
    shared = R.RecordFile(path)
    assert shared.all("a") == [{"id": "a", "v": 1}, {"id": "a", "v": 3}] and shared.get("b") == {"id": "b", "v": 2}
    path.write_text('{"id":"a"}\n{"no_id":1}\n')
    with pytest.raises(R.EcdError, match="records.jsonl:2: a record without 'id'"):
        R.RecordFile(path)
