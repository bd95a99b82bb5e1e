"""Faults and bad input: every branch of the failure policy against a scripted loopback server, one
clear line for every kind of bad input, and outputs that survive a stage killed mid-write."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import LoopbackChat, chat_completion, make_project
from ecd.records import read_jsonl, write_jsonl

N_SEEDS = 6


class _Script(LoopbackChat.Handler):
    """A server whose answer to each request is scripted by its prompt; counts what it is sent."""

    mode = "ok"
    sent: list[str] = []
    failing: set[str] = set()

    def reply(self, n, body):
        prompt = body.get("messages", [{}])[-1].get("content", "")
        type(self).sent.append(prompt)
        mode = type(self).mode
        if mode == "500" or (mode == "some-500" and prompt in type(self).failing):
            return 500, b'{"error": {"message": "overloaded"}}'
        if mode == "400-one" and prompt in type(self).failing:
            return 400, b'{"error": {"message": "prompt is longer than the context length"}}'
        if mode == "401":
            return 401, b'{"error": {"message": "bad key"}}'
        if mode == "malformed":
            return 200, b'{"choices": [ not json'
        return 200, chat_completion(f"An answer to: {prompt[:20]}")


@pytest.fixture()
def scripted(tmp_path):
    """A project whose teacher is the scripted server, with its seeds written; yields (project, handler)."""
    handler = type("Handler", (_Script,), {"sent": [], "failing": set(), "mode": "ok", "calls": 0})
    server, url = LoopbackChat.serve(handler)
    proj = make_project(tmp_path / "proj", {
        "seeds": {"limit": N_SEEDS},
        "teacher": {"backend": "openai", "model": "m", "base_url": url, "max_retries": 0, "timeout": 10,
                    "temperature": 0.0, "concurrency": 2},
    })
    proj.run(sys.executable, "stages/seeds.py")
    yield proj, handler
    server.shutdown()


def _sample(proj) -> subprocess.CompletedProcess:
    return proj.run(sys.executable, "stages/sample.py", "r0", check=False)


def _prompts(proj) -> list[str]:
    return [i["text"] for i in read_jsonl(proj.path / "data/rounds/r0/instructions.jsonl")]


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_a_server_that_fails_every_call_fails_the_stage_and_writes_nothing(scripted) -> None:
    proj, handler = scripted
    handler.mode = "500"
    line = _one_error_line(_sample(proj))
    assert re.search(rf"sample r0: {N_SEEDS} of {N_SEEDS} calls to m at http://127\.0\.0\.1:\d+/v1 failed after retries "
                     rf"\(http_500 ×{N_SEEDS}\)", line), line
    assert not (proj.path / "data/rounds/r0/responses.jsonl").exists()
    assert not (proj.path / "metrics/rounds/r0/sample.json").exists()


def test_after_recovery_the_rerun_sends_exactly_the_failed_calls(scripted) -> None:
    proj, handler = scripted
    handler.mode, handler.failing = "some-500", set(_prompts(proj)[::2])  # every other seed fails
    line = _one_error_line(_sample(proj))
    failed = int(re.search(r"(\d+) of \d+ calls", line).group(1))
    assert failed == len(handler.failing) == N_SEEDS // 2
    handler.mode, handler.sent = "ok", []
    proc = _sample(proj)
    assert proc.returncode == 0, proc.stderr
    assert sorted(handler.sent) == sorted(handler.failing)  # only the failed calls went out again
    responses = read_jsonl(proj.path / "data/rounds/r0/responses.jsonl")
    assert len(responses) == N_SEEDS and all(r["finish_reason"] == "stop" for r in responses)


def test_a_request_the_server_rejects_fails_that_request_only(scripted) -> None:
    proj, handler = scripted
    handler.mode, handler.failing = "400-one", {_prompts(proj)[0]}
    proc = _sample(proj)
    assert proc.returncode == 0, proc.stderr
    responses = read_jsonl(proj.path / "data/rounds/r0/responses.jsonl")
    assert sorted(r["finish_reason"] for r in responses) == ["rejected"] + ["stop"] * (N_SEEDS - 1)
    metrics = json.loads((proj.path / "metrics/rounds/r0/sample.json").read_text())
    assert metrics["rejected_calls"] == 1 and metrics["failed_calls"] == 0
    assert metrics["failed_by_cause"] == {"rejected_400": 1}
    assert "1 rejected" in proc.stdout


def test_malformed_replies_fail_the_stage_with_their_cause(scripted) -> None:
    proj, handler = scripted
    handler.mode = "malformed"
    assert f"(malformed_reply ×{N_SEEDS})" in _one_error_line(_sample(proj))


def test_a_raised_failure_threshold_lets_the_stage_finish_and_counts_the_failures(scripted) -> None:
    proj, handler = scripted
    proj.params({"teacher": {"max_failed_fraction": 0.5}})
    handler.mode, handler.failing = "some-500", set(_prompts(proj)[:2])
    proc = _sample(proj)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((proj.path / "metrics/rounds/r0/sample.json").read_text())
    assert metrics["failed_calls"] == 2 and metrics["failed_by_cause"] == {"http_500": 2}


def test_a_rejected_key_stops_at_once(scripted) -> None:
    proj, handler = scripted
    handler.mode = "401"
    line = _one_error_line(_sample(proj))
    assert "authentication failed" in line and "(401)" in line
    assert len(handler.sent) <= 2  # the calls already in flight (concurrency 2), no more


# ---------------------------------------------------------------------------------------------
# bad input, one line each


BAD_UTF8 = b'{"instruction": "caf\xe9", "instances": [{"input": "", "output": "x"}]}\n'


def _fresh(tmp_path: Path, overrides: dict | None = None):
    return make_project(tmp_path / "proj", overrides)


def test_a_seed_file_that_is_not_utf8_names_file_and_line(tmp_path) -> None:
    proj = _fresh(tmp_path, {"seeds": {"source": "seeds.jsonl"}})
    (proj.path / "seeds.jsonl").write_bytes(b'{"instruction": "ok", "instances": [{"input": "", "output": "x"}]}\n' + BAD_UTF8)
    line = _one_error_line(proj.run(sys.executable, "stages/seeds.py", check=False))
    assert line == "error: seeds.jsonl:2: not UTF-8 text (byte 21 of the line)"


def test_ifeval_responses_that_are_not_utf8_name_file_and_line(tmp_path) -> None:
    bad = tmp_path / "responses.jsonl"
    bad.write_bytes(b'{"prompt": "a", "response": "b"}\n' + BAD_UTF8)
    proc = subprocess.run([sys.executable, "-m", "ecd.cli", "ifeval", "--responses", str(bad), "--output-dir",
                           str(tmp_path / "out")], capture_output=True, text=True)
    assert _one_error_line(proc) == f"error: {bad}:2: not UTF-8 text (byte 21 of the line)"


def test_a_params_file_that_is_not_utf8_is_named(tmp_path) -> None:
    proj = _fresh(tmp_path)
    (proj.path / "params.yaml").write_bytes(b"seed:\n  limit: 3\n# caf\xe9\n")
    assert _one_error_line(proj.run(sys.executable, "stages/seeds.py", check=False)) == \
        "error: params.yaml:3: not UTF-8 text"


@pytest.mark.parametrize("argv, missing, maker", [
    (["stages/train.py", "preference"], "data/pairs/train.parquet", "pair"),
    (["stages/sample.py", "r1"], "data/rounds/r1/instructions.jsonl", "evolve@r1"),
    (["stages/evolve.py", "r2"], "data/rounds/r1/state.jsonl", "verify@r1"),
    (["stages/split.py"], "data/rounds/r0/state.jsonl", "verify_r0"),
    (["stages/sft.py"], "models/base", "student"),
])
def test_a_stage_run_before_its_inputs_exist_names_them_and_their_stage(tmp_path, argv, missing, maker) -> None:
    proj = _fresh(tmp_path)
    line = _one_error_line(proj.run(sys.executable, *argv, check=False))
    assert missing in line and f"made by stage {maker}: run `dvc repro {maker}`" in line, line


def test_a_missing_local_model_is_not_reported_as_a_hub_failure(tmp_path) -> None:
    proj = _fresh(tmp_path, {"student": {"model": "models/no-such-model"}})
    line = _one_error_line(proj.run(sys.executable, "stages/student.py", check=False))
    assert line == "error: student.model path does not exist: models/no-such-model"


def test_over_long_seeds_are_skipped_and_counted_or_refused(tmp_path) -> None:
    proj = _fresh(tmp_path, {"seeds": {"source": "seeds.jsonl"}})
    rows = [{"instruction": "Say hi.", "instances": [{"input": "", "output": "Hi."}]},
            {"instruction": "x" * 1_000_000, "instances": [{"input": "", "output": "Long."}]},
            {"instruction": "Say bye.", "instances": [{"input": "", "output": "b" * 9_000}]}]
    write_jsonl(proj.path / "seeds.jsonl", rows)
    out = proj.run(sys.executable, "stages/seeds.py").stdout
    assert "1 seed instructions" in out
    assert json.loads((proj.path / "metrics/seeds.json").read_text())["left_out_by_cause"] == {
        "too_long_instruction": 1, "too_long_reference": 1}
    proj.params({"seeds": {"too_long": "error"}})
    line = _one_error_line(proj.run(sys.executable, "stages/seeds.py", check=False))
    assert line == "error: seeds.jsonl:2: instruction of 1,000,000 characters is over seeds.max_instruction_chars=8,000"


# ---------------------------------------------------------------------------------------------
# a stage killed mid-write


_SLOW_WRITER = """
import sys, time
from ecd.records import write_jsonl
def rows():
    for i in range(10**6):
        if i == 100:
            print("writing", flush=True)
            time.sleep(60)
        yield {"i": i}
write_jsonl(sys.argv[1], rows())
"""


def test_a_stage_killed_mid_write_leaves_its_previous_output_intact(tmp_path) -> None:
    target = tmp_path / "data" / "out.jsonl"
    write_jsonl(target, [{"previous": True}])
    before = target.read_bytes()
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"  # half-way through the new file
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert target.read_bytes() == before
    # the half-written file lies in a hidden temporary folder beside the target, never at it
    assert [p.name for p in target.parent.iterdir() if not p.name.startswith(".")] == ["out.jsonl"]


_POOL_USER = """
import threading, time
from ecd.workers import ordered_map
threading.Thread(target=lambda: list(ordered_map(time.sleep, [60] * 4, 2)), daemon=True).start()
time.sleep(600)
"""


def test_a_stage_killed_with_its_workers_busy_takes_them_with_it() -> None:
    """``kill -9`` of a stage's process ends its worker processes too (each holds both ends of the
    pool's queue, so none would ever see it close): nothing is left running or holding memory."""
    import psutil

    proc = subprocess.Popen([sys.executable, "-c", _POOL_USER])
    try:
        deadline = time.monotonic() + 60
        workers: list[psutil.Process] = []
        while len(workers) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            workers = [p for p in psutil.Process(proc.pid).children(recursive=True)
                       if "spawn_main" in " ".join(p.cmdline())]
        assert len(workers) == 2, "the pool's two workers never started"
        time.sleep(1)  # past their first act (the initializer), busy in time.sleep(60)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        gone, alive = psutil.wait_procs(workers, timeout=15)
        assert alive == [] and len(gone) == 2
    finally:
        if proc.poll() is None:
            proc.kill()
