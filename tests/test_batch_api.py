"""The Batch API mode against a scripted loopback server that implements the endpoints it uses
(``POST /files``, ``POST /batches``, ``GET /batches/{id}``, ``GET /files/{id}/content``), including
batches that expire with requests unanswered and a stage killed while its batch runs."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler

import pytest

from conftest import ROOT, LoopbackChat, env
from ecd.backends import CallsFailed, OpenAIBackend, Request, generate_cached
from ecd.cache import CallCache
from ecd.params import ModelParams


class _BatchServer(BaseHTTPRequestHandler):
    """Batches end on their second poll. ``expire_first[k]``: how many requests batch k answers
    before it expires (None: all, completed)."""

    lock = threading.Lock()
    files: dict[str, bytes] = {}
    batches: dict[str, dict] = {}
    uploads: list[int] = []  # lines per uploaded batch file
    expire_first: list[int | None] = []
    hold = threading.Event()  # while clear, batches stay in progress

    def _send(self, status: int, body: object, raw: bytes | None = None) -> None:
        out = raw if raw is not None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def do_POST(self) -> None:  # noqa: N802
        cls = type(self)
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        with cls.lock:
            if self.path.endswith("/files"):
                msg = BytesParser().parsebytes(b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + raw)
                content = next(part.get_payload(decode=True) for part in msg.get_payload()
                               if part.get_param("name", header="content-disposition") == "file")
                fid = f"file-{len(cls.files)}"
                cls.files[fid] = content
                cls.uploads.append(content.decode().count("\n"))
                return self._send(200, {"id": fid, "object": "file", "bytes": len(content), "created_at": 0,
                                        "filename": "in.jsonl", "purpose": "batch", "status": "processed"})
            if self.path.endswith("/batches"):
                body = json.loads(raw)
                bid = f"batch-{len(cls.batches)}"
                cls.batches[bid] = {"input": body["input_file_id"], "polls": 0, "status": "validating"}
                return self._send(200, self._batch(bid))
        self._send(404, {"error": {"message": "no such endpoint"}})

    def do_GET(self) -> None:  # noqa: N802
        cls = type(self)
        with cls.lock:
            if "/batches/" in self.path:
                bid = self.path.rsplit("/", 1)[1]
                if bid not in cls.batches:
                    return self._send(404, {"error": {"message": "no such batch"}})
                b = cls.batches[bid]
                b["polls"] += 1
                if b["status"] not in ("completed", "expired") and b["polls"] >= 2 and cls.hold.is_set():
                    self._finish(bid)
                elif b["status"] == "validating":
                    b["status"] = "in_progress"
                return self._send(200, self._batch(bid))
            if self.path.endswith("/content"):
                fid = self.path.split("/")[-2]
                return self._send(200, None, raw=cls.files[fid])
        self._send(404, {"error": {"message": "no such endpoint"}})

    def _finish(self, bid: str) -> None:
        cls = type(self)
        b = cls.batches[bid]
        k = int(bid.split("-")[1])
        limit = cls.expire_first[k] if k < len(cls.expire_first) else None
        out, err = [], []
        for n, line in enumerate(cls.files[b["input"]].decode().splitlines()):
            req = json.loads(line)
            if limit is not None and n >= limit:
                err.append({"id": f"r{n}", "custom_id": req["custom_id"], "response": None,
                            "error": {"code": "batch_expired", "message": "expired"}})
                continue
            text = "ok " + req["body"]["messages"][-1]["content"]
            out.append({"id": f"r{n}", "custom_id": req["custom_id"], "error": None, "response": {
                "status_code": 200, "body": {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                                             "choices": [{"index": 0, "finish_reason": "stop",
                                                          "message": {"role": "assistant", "content": text}}],
                                             "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}}})
        for name, rows in (("output_file_id", out), ("error_file_id", err)):
            if rows:
                fid = f"file-{len(cls.files)}"
                cls.files[fid] = "".join(json.dumps(r) + "\n" for r in rows).encode()
                b[name] = fid
        b["status"] = "completed" if limit is None else "expired"
        b["done"] = len(out)

    def _batch(self, bid: str) -> dict:
        b = type(self).batches[bid]
        total = type(self).files[b["input"]].decode().count("\n")
        return {"id": bid, "object": "batch", "endpoint": "/v1/chat/completions", "input_file_id": b["input"],
                "completion_window": "24h", "status": b["status"], "created_at": 0,
                "output_file_id": b.get("output_file_id"), "error_file_id": b.get("error_file_id"),
                "request_counts": {"total": total, "completed": b.get("done", 0), "failed": 0}}

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def batch_server():
    handler = type("Batches", (_BatchServer,), {"lock": threading.Lock(), "files": {}, "batches": {}, "uploads": [],
                                                "expire_first": [], "hold": threading.Event()})
    handler.hold.set()
    server, url = LoopbackChat.serve(handler)
    yield handler, url
    server.shutdown()


def _backend(url: str) -> OpenAIBackend:
    return OpenAIBackend(ModelParams(backend="openai", model="m", base_url=url, batch_api=True,
                                     batch_poll_seconds=0.05, max_retries=0, temperature=0.0))


def _requests(n: int = 6) -> list[Request]:
    return [Request(messages=[{"role": "user", "content": f"q{i}"}], seed=i) for i in range(n)]


def test_misses_go_through_one_batch_and_into_the_cache(batch_server, tmp_path) -> None:
    handler, url = batch_server
    cache = CallCache(tmp_path / "calls.sqlite")
    done, stats = generate_cached(_backend(url), _requests(), template_version="t", description="b", cache=cache)
    assert [c.text for c in done] == [f"ok q{i}" for i in range(6)]
    assert handler.uploads == [6] and len(handler.batches) == 1 and stats.failed == 0
    # the rerun asks nothing: every answer is in the call cache
    again, stats = generate_cached(_backend(url), _requests(), template_version="t", description="b", cache=cache)
    assert [c.text for c in again] == [c.text for c in done] and stats.hits == 6
    assert handler.uploads == [6]


def test_an_expired_batchs_unanswered_requests_go_into_the_next(batch_server, tmp_path, capsys) -> None:
    handler, url = batch_server
    handler.expire_first = [2]  # the first batch answers 2 of 6, then expires
    done, stats = generate_cached(_backend(url), _requests(), template_version="t", description="b",
                                  cache=CallCache(tmp_path / "calls.sqlite"))
    assert sorted(c.text for c in done) == sorted(f"ok q{i}" for i in range(6))
    assert handler.uploads == [6, 4] and stats.failed == 0
    printed = capsys.readouterr()
    assert "batch-0: expired, 2 of 6 answered, 4 failed" in printed.out + printed.err


def test_requests_no_batch_answers_fail_the_stage_and_the_answered_are_kept(batch_server, tmp_path) -> None:
    handler, url = batch_server
    handler.expire_first = [2, 1]  # 2 answered, then 1 of the 4 resent: 3 never answered
    cache = CallCache(tmp_path / "calls.sqlite")
    with pytest.raises(CallsFailed, match=r"3 of 6 calls .* failed .*batch_error ×3"):
        generate_cached(_backend(url), _requests(), template_version="t", description="b", cache=cache)
    assert cache.count() == 3


CLIENT = """
import sys
from ecd.backends import OpenAIBackend, Request, generate_cached
from ecd.cache import CallCache
from ecd.params import ModelParams
backend = OpenAIBackend(ModelParams(backend="openai", model="m", base_url=sys.argv[1], batch_api=True,
                                    batch_poll_seconds=0.05, max_retries=0, temperature=0.0))
requests = [Request(messages=[{"role": "user", "content": f"q{i}"}], seed=i) for i in range(6)]
done, _ = generate_cached(backend, requests, template_version="t", description="b", cache=CallCache(sys.argv[2]))
print("texts", [c.text for c in done], flush=True)
"""


def test_a_stage_killed_while_its_batch_runs_finds_the_batch_again(batch_server, tmp_path) -> None:
    handler, url = batch_server
    handler.hold.clear()  # the batch stays in progress
    e = env(tmp_path / "call-cache")
    args = [sys.executable, "-c", CLIENT, url, str(tmp_path / "calls.sqlite")]
    proc = subprocess.Popen(args, env=e, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while not handler.batches and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.kill()
    proc.wait()
    assert handler.uploads == [6] and len(handler.batches) == 1
    handler.hold.set()
    rerun = subprocess.run(args, env=e, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "found batch batch-0" in rerun.stdout + rerun.stderr
    assert handler.uploads == [6] and len(handler.batches) == 1  # nothing paid twice
    assert "ok q5" in rerun.stdout
