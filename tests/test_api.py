"""The Python API (ecd/api.py) and docs/api.md: the page's first example runs as written; its
second, which needs a pipeline run, runs in tests/test_pipeline.py's project."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import ecd
from ecd.errors import EcdError

ROOT = Path(__file__).resolve().parents[1]


def api_examples() -> list[str]:
    """The Python blocks of docs/api.md, in order."""
    return re.findall(r"```python\n(.*?)```", (ROOT / "docs/api.md").read_text(), re.S)


def test_the_first_example_runs_and_prints_what_the_page_says() -> None:
    proc = subprocess.run([sys.executable, "-c", api_examples()[0]], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    shown = re.search(r"# (\[\('change_case.*\])", api_examples()[0])
    assert shown and lines[0] == shown.group(1)  # the output written on the page is the output
    n, scored, strict = lines[1].split()
    assert n == scored == "541" and 0.0 < float(strict) < 1.0


def test_every_name_is_exported_typed_and_loaded_on_use() -> None:
    code = "import sys, ecd; print('ecd.api' in sys.modules); ecd.check; print('ecd.api' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120).stdout.split()
    assert out == ["False", "True"]  # importing ecd loads none of it
    assert all(callable(getattr(ecd, name)) and getattr(ecd, name).__doc__ for name in ecd.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ecd.nope  # noqa: B018


def test_bad_arguments_say_what_is_accepted(tmp_path: Path) -> None:
    with pytest.raises(EcdError, match="instructions, chains, responses, verdicts, state, steps; not 'step'"):
        ecd.read_round("r1", "step")
    with pytest.raises(EcdError, match="train and a test split; not 'validation'"):
        ecd.read_pairs("validation")
    with pytest.raises(EcdError, match="benchmarks: ifeval, ifbench; not 'mmlu'"):
        ecd.benchmark_prompts("mmlu")
    with pytest.raises(EcdError, match="no response for 540 of ifeval's 541 prompts"):
        ecd.score_benchmark({ecd.benchmark_prompts()[0]["prompt"]: "x"})
    with pytest.raises(KeyError, match="did you mean 'punctuation:no_comma'"):
        ecd.check("x", [{"id": "punctuation:no_comas"}])
