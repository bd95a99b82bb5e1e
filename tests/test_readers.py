"""Every reader of ecd, fed random, truncated and corrupted bytes, either reads the file or raises one
``EcdError`` that names it — never another exception (a property test with hypothesis)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecd.errors import EcdError
from ecd.evaluation import read_ifeval_input, read_ifeval_responses, user_oriented
from ecd.layout import IFEVAL_INPUT
from ecd.pairs import load_pairs
from ecd.params import SeedParams, load_params
from ecd.records import read_jsonl, read_text
from ecd.seeds import read_seeds
from ecd.split import load_split

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "data" / "self-instruct" / "seed_tasks.jsonl"


def _head(path: Path, size: int) -> bytes:
    """The first whole lines of a file, about ``size`` bytes of them."""
    return path.read_bytes()[:size].rsplit(b"\n", 1)[0] + b"\n"


def _pairs_dir(path: Path) -> None:
    load_pairs(path.parent, path.stem)


#: (file name, reader, a valid file to truncate and corrupt)
READERS: dict[str, tuple[str, Callable[[Path], object], bytes]] = {
    "jsonl records": ("records.jsonl", read_jsonl, _head(next((ROOT / "tests/fixtures/self-instruct").glob("*.jsonl")), 4000)),
    "params": ("params.yaml", load_params, (ROOT / "params.yaml").read_bytes()),
    "seeds (jsonl)": ("seeds.jsonl", lambda p: read_seeds(SeedParams(source=str(p))), _head(SEEDS, 4000)),
    "seeds (json)": ("seeds.json", lambda p: read_seeds(SeedParams(source=str(p))), b'[{"instruction": "Hi", "output": "Hello"}]'),
    "ifeval input": ("input.jsonl", read_ifeval_input, _head(IFEVAL_INPUT, 4000)),
    "ifeval responses": ("responses.jsonl", read_ifeval_responses, b'{"prompt": "a", "response": "b"}\n' * 3),
    "user-oriented": ("user.jsonl", lambda p: user_oriented(p, p),
                      b'{"id": "u1", "instruction": "Sum up.", "instances": [{"input": "a b"}], "response": "ab"}\n' * 3),
    "split": ("split.json", load_split, b'{"train_roots": ["a"], "test_roots": ["b"], "seed": 0, "test_fraction": 0.5}'),
    "text": ("notes.txt", read_text, "naïve text\n".encode()),
    "pairs (parquet)": ("train.parquet", _pairs_dir, b"PAR1" + bytes(range(256)) * 4 + b"PAR1"),
}


def _reads_or_names_the_file(name: str, data: bytes) -> None:
    file_name, reader, _ = READERS[name]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / file_name
        path.write_bytes(data)
        cwd = os.getcwd()
        os.chdir(d)  # readers resolve stage outputs from the working directory, as stages do
        try:
            reader(path)
        except EcdError as exc:
            assert file_name in str(exc), f"{name}: the error does not name the file: {exc}"
        finally:
            os.chdir(cwd)


@st.composite
def damaged(draw, valid: bytes) -> bytes:
    """Random bytes, a valid file cut short, or a valid file with a few bytes overwritten."""
    kind = draw(st.sampled_from(["random", "truncated", "flipped"]))
    if kind == "random":
        return draw(st.binary(max_size=600))
    if kind == "truncated":
        return valid[: draw(st.integers(0, len(valid)))]
    out = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        out[draw(st.integers(0, len(out) - 1))] = draw(st.integers(0, 255))
    return bytes(out)


@pytest.mark.parametrize("name", sorted(READERS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_reader_reads_or_raises_one_error_naming_the_file(name: str, data) -> None:
    _reads_or_names_the_file(name, data.draw(damaged(READERS[name][2])))


@pytest.mark.parametrize("name", sorted(READERS))
def test_the_valid_files_are_read(name: str) -> None:
    file_name, reader, valid = READERS[name]
    if name == "pairs (parquet)":
        pytest.skip("the sample bytes are not a real table: only damage is tried")
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / file_name
        path.write_bytes(valid)
        reader(path)
