"""A killed generation stage resumes: the rerun recomputes none of the calls that had finished."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import make_project

pytestmark = pytest.mark.slow

N = 40


def _count(db) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return con.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_kill_minus_nine_mid_stage_loses_only_unfinished_calls(tiny_model, tmp_path) -> None:
    proj = make_project(tmp_path / "proj", {
        "seeds": {"limit": N},
        "teacher": {"backend": "transformers", "model": str(tiny_model), "max_new_tokens": 64, "batch_size": 2},
    })
    proj.run(sys.executable, "stages/seeds.py")
    db = tmp_path / "proj-cache" / "calls.sqlite"
    stage = subprocess.Popen([sys.executable, "stages/sample.py", "r0"], cwd=proj.path, env=proj.env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while _count(db) < 6 and time.time() < deadline and stage.poll() is None:
        time.sleep(0.05)
    os.kill(stage.pid, signal.SIGKILL)
    stage.wait()
    done = _count(db)
    assert 0 < done < N, f"kill came too late or too early: {done} of {N} calls cached"
    assert not (proj.path / "data/rounds/r0/responses.jsonl").exists()  # no half-written output

    rerun = proj.run(sys.executable, "stages/sample.py", "r0")
    assert re.search(rf"sample r0: {N} responses \(\d+ cut at max_new_tokens\); cache {done} hits, {N - done} misses", rerun.stdout)

    # the same answers as an uninterrupted run in a fresh cache
    proj.env["ECD_CACHE_DIR"] = str(tmp_path / "fresh-cache")
    resumed = (proj.path / "data/rounds/r0/responses.jsonl").read_text()
    proj.run(sys.executable, "stages/sample.py", "r0")
    assert (proj.path / "data/rounds/r0/responses.jsonl").read_text() == resumed

    stats = json.loads(proj.run("ecd", "cache", "stats", "--json").stdout)
    assert stats["last_run"] == {"entries": N, "hits": 0, "misses": N, "bytes": stats["total"]["bytes"]}
    assert stats["total"]["entries"] == N


def test_batch_size_change_is_all_cache_hits(tiny_model, tmp_path) -> None:
    proj = make_project(tmp_path / "proj", {
        "seeds": {"limit": 8},
        "teacher": {"backend": "transformers", "model": str(tiny_model), "max_new_tokens": 16, "batch_size": 3},
    })
    proj.run(sys.executable, "stages/seeds.py")
    proj.run(sys.executable, "stages/sample.py", "r0")
    first = (proj.path / "data/rounds/r0/responses.jsonl").read_text()
    proj.params({"teacher": {"batch_size": 8}})
    out = proj.run(sys.executable, "stages/sample.py", "r0").stdout
    assert re.search(r"cache 8 hits, 0 misses", out)
    assert (proj.path / "data/rounds/r0/responses.jsonl").read_text() == first
