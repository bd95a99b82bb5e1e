"""Faults a long run meets, each ending in one line with nothing lost: a full disk, a damaged call
cache, an output path blocked by a file, unreadable weights, absurd params, a server that trickles,
cuts its replies or stalls, and SIGTERM or SIGINT mid-stage. Real files, a real tmpfs where the
tests may mount one, real signals, a real loopback server."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import LoopbackChat, chat_completion, make_project
from ecd.backends.base import Request
from ecd.backends.cached import generate_cached
from ecd.backends.openai_server import OpenAIBackend
from ecd.cache import CallCache
from ecd.errors import EcdError
from ecd.params import ModelParams, load_params, validate_params

N_SEEDS = 6


class _Server(LoopbackChat.Handler):
    """Answers at once, or as ``mode`` says: ``hang`` after the first ``answer_first`` requests,
    ``trickle`` (a byte every 0.2 s), ``cut`` (headers, then part of the body, then the connection closes)."""

    mode = "ok"
    answer_first = 0
    answered = 0
    prompts: list[str] = []
    release = threading.Event()

    def do_POST(self) -> None:  # noqa: N802
        cls = type(self)
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        prompt = body["messages"][-1]["content"]
        cls.prompts.append(prompt)
        if cls.mode == "hang" and len(cls.prompts) > cls.answer_first:
            cls.release.wait(120)
        out = chat_completion(f"An answer to: {prompt[:20]}")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if cls.mode == "trickle":
            for b in out:
                self.wfile.write(bytes([b]))
                self.wfile.flush()
                time.sleep(0.2)
        elif cls.mode == "cut":
            self.wfile.write(out[:20])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        else:
            self.wfile.write(out)
        cls.answered += 1


@pytest.fixture()
def server():
    handler = type("Handler", (_Server,), {"prompts": [], "answered": 0, "mode": "ok", "answer_first": 0,
                                           "release": threading.Event()})
    srv, url = LoopbackChat.serve(handler)
    yield handler, url
    handler.release.set()
    srv.shutdown()


@pytest.fixture()
def project(tmp_path, server):
    _, url = server
    proj = make_project(tmp_path / "proj", {
        "seeds": {"limit": N_SEEDS},
        "teacher": {"backend": "openai", "model": "m", "base_url": url, "max_retries": 0, "timeout": 60,
                    "temperature": 0.0, "concurrency": 1},
    })
    proj.run(sys.executable, "stages/seeds.py")
    return proj


def _cache_file(proj) -> Path:
    return Path(proj.env["ECD_CACHE_DIR"]) / "calls.sqlite"


def _one_line(proc: subprocess.CompletedProcess, status: int = 2, start: str = "error:") -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith(start)]
    assert proc.returncode == status and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def _sample(proj) -> subprocess.CompletedProcess:
    return proj.run(sys.executable, "stages/sample.py", "r0", check=False)


# --- errors that are not ecd's own ---------------------------------------------------------------


def test_an_unexpected_error_is_one_line_and_ecd_debug_shows_its_traceback(tmp_path) -> None:
    code = "from ecd.errors import report_errors\nreport_errors(lambda: {}['missing'])()"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert _one_line(proc, 1).startswith("error: unexpected KeyError: 'missing'")
    assert "ECD_DEBUG=1" in proc.stderr
    debug = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "ECD_DEBUG": "1"})
    assert debug.returncode == 1 and "Traceback" in debug.stderr


@pytest.fixture()
def full_tmpfs(tmp_path):
    """A 512 KiB tmpfs, filled to the last byte; skipped where the tests may not mount one."""
    mount = tmp_path / "full"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {made.stderr.strip()}")
    try:
        fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        os.close(fd)
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_under_the_outputs_is_one_line_and_leaves_nothing_half_written(project, full_tmpfs) -> None:
    import shutil

    rounds = project.path / "data/rounds"
    shutil.rmtree(rounds)
    rounds.symlink_to(full_tmpfs)
    proc = project.run(sys.executable, "stages/seeds.py", check=False)
    assert "no space left on the device" in _one_line(proc)
    files = [p.relative_to(full_tmpfs) for p in full_tmpfs.rglob("*") if not p.is_dir()]
    assert files == [Path("filler")]  # no temporary, no half-written file


def test_a_full_disk_under_the_call_cache_is_one_line(project, full_tmpfs) -> None:
    project.env["ECD_CACHE_DIR"] = str(full_tmpfs / "cache")
    assert "no space left on the device" in _one_line(_sample(project))


def test_a_cache_directory_that_is_a_file_and_an_output_directory_that_is_a_file(project, tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    project.env["ECD_CACHE_DIR"] = str(blocker)
    assert "the call cache's directory" in _one_line(_sample(project))
    project.env["ECD_CACHE_DIR"] = str(tmp_path / "cache")
    import shutil

    shutil.rmtree(project.path / "data/rounds/r0")
    (project.path / "data/rounds/r0").write_text("a file where the round's folder goes")
    line = _one_line(project.run(sys.executable, "stages/seeds.py", check=False))
    assert line == "error: data/rounds/r0: a file is in the way of a directory"


def test_weights_cut_short_are_one_line_naming_the_model(tiny_model, tmp_path) -> None:
    import shutil

    from ecd.backends.transformers_lm import TransformersBackend

    damaged = tmp_path / "model"
    shutil.copytree(tiny_model, damaged)
    weights = damaged / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    backend = TransformersBackend(ModelParams(backend="transformers", model=str(damaged), temperature=0.0))
    with pytest.raises(EcdError, match="weights cannot be read .* truncated or damaged"):
        backend.generate([Request([{"role": "user", "content": "hi"}])], lambda i, c: None)


def test_a_table_of_another_schema_is_named_by_ecd_inspect(project, tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pairs = tmp_path / "pairs"
    pairs.mkdir()
    pq.write_table(pa.table({"text": ["a"], "label": [1]}), pairs / "train.parquet")
    line = _one_line(project.run("ecd", "inspect", str(pairs), check=False))
    assert "train.parquet: not a table of ecd's pairs: no column" in line


# --- a damaged call cache ------------------------------------------------------------------------


def test_a_cache_file_that_is_not_a_database_is_moved_aside_and_recomputed(project, server) -> None:
    handler, _ = server
    assert _sample(project).returncode == 0
    cache = _cache_file(project)
    cache.write_bytes(b"this was a database before the machine crashed" * 100)
    for journal in ("-wal", "-shm"):
        Path(f"{cache}{journal}").unlink(missing_ok=True)
    check = project.run("ecd", "cache", "check", check=False)
    assert check.returncode == 1 and "damaged" in check.stdout and "file is not a database" in check.stdout
    assert check.stderr == ""  # the verdict is the output; exit status 1 says damaged, nothing more
    before = len(handler.prompts)
    proc = _sample(project)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert "warning: the call cache" in proc.stderr and "was damaged (file is not a database)" in proc.stderr
    assert len(handler.prompts) - before == N_SEEDS  # recomputed, never served from the damaged file
    assert list(cache.parent.glob("calls.sqlite.damaged-*"))
    assert project.run("ecd", "cache", "check").stdout.startswith(f"ok: {N_SEEDS} entries")


def test_damaged_entries_are_dropped_and_recomputed(project, server) -> None:
    handler, _ = server
    assert _sample(project).returncode == 0
    db = sqlite3.connect(_cache_file(project))
    keys = [k for (k,) in db.execute("SELECT key FROM calls ORDER BY key LIMIT 2")]
    with db:
        db.execute("UPDATE calls SET result = '{\"text\": \"half' WHERE key = ?", (keys[0],))  # a torn write
        db.execute("UPDATE calls SET result = '{\"answer\": 1}' WHERE key = ?", (keys[1],))  # not a completion
    db.close()
    check = project.run("ecd", "cache", "check", check=False)
    assert check.returncode == 1 and "1 of 6 entries" in check.stdout  # the torn one; the other parses
    before = len(handler.prompts)
    proc = _sample(project)
    assert proc.returncode == 0 and "damaged entries of the call cache" in proc.stderr
    assert len(handler.prompts) - before == 2


def test_cache_clear_works_on_a_damaged_file(project) -> None:
    cache = _cache_file(project)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(b"\0garbage")
    out = project.run("ecd", "cache", "clear").stdout
    assert "call cache cleared" in out and not cache.exists()


# --- params no run can use -----------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "message"), [
    ({"teacher": {"temperature": float("inf")}}, "teacher.temperature: Input should be a finite number"),
    ({"train": {"dpo": {"beta": float("nan")}}}, "train.dpo.beta: Input should be a finite number"),
    ({"train": {"dpo": {"epochs": float("inf")}}}, "train.dpo.epochs: Input should be a finite number"),
    ({"evolve": {"op_weights": {"format": float("nan")}}}, "evolve.op_weights.format: Input should be a finite number"),
    ({"evolve": {"chains_per_seed": 1_000_000}}, "evolve.chains_per_seed: Input should be less than or equal to 1000"),
    ({"teacher": {"max_new_tokens": 10**9}}, "teacher.max_new_tokens: Input should be less than or equal to 131072"),
    ({"evolve": {"op_weights": {"fromat": 1.0}}}, "unknown operation 'fromat' (did you mean 'format'?)"),
    ({"evolve": {"op_weights": {"format": -1.0}}}, "the weight of 'format' is negative"),
    ({"rounds": {f"r{i}": {"prev": f"r{i - 1}"} for i in range(1, 102)}}, "rounds: 101 rounds: at most 100"),
])
def test_params_no_run_can_use_are_refused(raw: dict, message: str) -> None:
    with pytest.raises(EcdError) as info:
        validate_params(raw)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(("text", "message"), [
    ("", "params.yaml is empty"),
    ("# only a comment\n", "params.yaml is empty"),
    ("seeds:\n  limit: 3\nevolve:\n  seed: 1\nseeds:\n  limit: 4\n", "params.yaml:5: invalid YAML ('seeds' is written twice (first at line 1)"),
    ("evolve:\n  seed: 1\n  seed: 2\n", "params.yaml:3: invalid YAML ('seed' is written twice (first at line 2)"),
])
def test_empty_and_duplicated_params_files_name_the_file(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(EcdError) as info:
        load_params(path)
    assert message in str(info.value)


def test_max_new_tokens_beyond_the_models_context_names_the_bound(tiny_model) -> None:
    from ecd.backends.transformers_lm import TransformersBackend

    backend = TransformersBackend(ModelParams(backend="transformers", model=str(tiny_model), max_new_tokens=5000))
    with pytest.raises(EcdError, match="max_new_tokens 5000 leaves no room .* context of 1024 tokens"):
        backend.generate([Request([{"role": "user", "content": "hi"}])], lambda i, c: None)


# --- HTTP: a deadline per request, and causes named --------------------------------------------


def _run(url: str, prompts: list[str], **overrides) -> tuple[list, dict]:
    params = ModelParams(backend="openai", model="m", base_url=url, max_retries=0, timeout=5, temperature=0.0,
                         max_failed_fraction=1.0, **overrides)
    done, stats = generate_cached(OpenAIBackend(params), [Request([{"role": "user", "content": p}]) for p in prompts],
                                  template_version="t", description="test", cache=CallCache())
    return done, stats.failed_by_cause


def test_a_server_that_trickles_its_reply_meets_the_deadline(server) -> None:
    handler, url = server
    handler.mode = "trickle"  # about 60 s for the whole body, a byte every 0.2 s: no read ever times out
    start = time.monotonic()
    done, causes = _run(url, ["slow"], deadline=2.0)
    assert time.monotonic() - start < 10
    assert causes == {"deadline": 1} and done[0].text == ""


def test_a_reply_cut_mid_body_is_one_counted_failure_not_an_unreachable_server(server) -> None:
    handler, url = server
    handler.mode = "cut"
    done, causes = _run(url, ["a", "b"])
    assert causes == {"cut_reply": 2}


def test_a_request_that_cannot_be_serialised_is_named_and_never_sent(server) -> None:
    handler, url = server
    done, causes = _run(url, ["fine", "broken \ud800 text"])
    assert causes == {"unserialisable_request": 1} and handler.prompts == ["fine"]


# --- signals ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("signum", "status", "name"), [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")])
def test_a_signal_mid_stage_keeps_the_answers_received_and_the_rerun_sends_the_rest(project, server, signum, status, name) -> None:
    handler, _ = server
    handler.mode, handler.answer_first = "hang", 3
    # SIGINT's default restored in the child: a process started where SIGINT is ignored (a background
    # job of a shell, or a test run after one that ignored it) inherits the ignoring, as Python honours it
    stage = subprocess.Popen([sys.executable, "stages/sample.py", "r0"], cwd=project.path, env=project.env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not (handler.answered == 3 and len(handler.prompts) == 4):  # three answered, the fourth hangs
        assert time.monotonic() < deadline and stage.poll() is None, stage.communicate()
        time.sleep(0.05)
    # one request at a time: the fourth is sent only after the third answer reached the client, well
    # inside the cache's 5 s commit interval, so the three are received and not yet committed
    stage.send_signal(signum)
    out, err = stage.communicate(timeout=60)
    proc = subprocess.CompletedProcess(stage.args, stage.returncode, out, err)
    line = _one_line(proc, status, start="interrupted")
    assert line.startswith(f"interrupted ({name}): the answers already received are in the call cache")
    assert not (project.path / "data/rounds/r0/responses.jsonl").exists()
    db = sqlite3.connect(_cache_file(project))
    assert db.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 3
    db.close()
    handler.mode = "ok"
    handler.release.set()
    sent = len(handler.prompts)
    assert _sample(project).returncode == 0
    assert len(handler.prompts) - sent == N_SEEDS - 3
