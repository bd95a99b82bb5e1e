"""Shared fixtures: a copy of the project in a temporary git repo, and a tiny local model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = str(Path(sys.executable).parent)

#: a fresh run: DVC's lock, metrics and plots of the committed run are left behind
_SKIP = ("dvc.lock", "metrics/", "plots/")


def env(cache_dir: Path) -> dict[str, str]:
    e = dict(os.environ)
    e.update(
        PATH=VENV_BIN + os.pathsep + e.get("PATH", ""),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        DVC_NO_ANALYTICS="1",
        ECD_CACHE_DIR=str(cache_dir),
        PYTHONHASHSEED="0",
        GIT_AUTHOR_NAME="ecd-test",
        GIT_AUTHOR_EMAIL="ecd@example.invalid",
        GIT_COMMITTER_NAME="ecd-test",
        GIT_COMMITTER_EMAIL="ecd@example.invalid",
    )
    return e


def deep_update(base: dict, over: dict) -> dict:
    """Merge ``over`` into ``base``; ``rounds`` is replaced whole (it is a list of items)."""
    for k, v in over.items():
        if k != "rounds" and isinstance(v, dict) and isinstance(base.get(k), dict):
            deep_update(base[k], v)
        else:
            base[k] = v
    return base


class Project:
    """A copy of the project's tracked files in a temporary git repo, with its own call cache."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.env = env(path.parent / f"{path.name}-cache")

    def run(self, *cmd: str, check: bool = True, timeout: int = 900, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess:
        """``cmd`` in the project with its environment (and ``env`` over it)."""
        proc = subprocess.run(cmd, cwd=self.path, env={**self.env, **(env or {})}, capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    def params(self, overrides: dict) -> None:
        p = self.path / "params.yaml"
        data = yaml.safe_load(p.read_text())
        p.write_text(yaml.safe_dump(deep_update(data, overrides), sort_keys=False))

    def commit(self, message: str) -> None:
        self.run("git", "add", "-A")
        self.run("git", "commit", "-qm", message, "--allow-empty")


def make_project(dest: Path, overrides: dict | None = None) -> Project:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    dest.mkdir(parents=True)
    for f in files:
        if f.startswith(_SKIP) or not (ROOT / f).exists():
            continue
        target = dest / f
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, target)
    proj = Project(dest)
    if overrides:
        proj.params(overrides)
    proj.run("git", "init", "-q")
    proj.commit("project copy")
    return proj


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny Llama with a BPE tokenizer trained on the seed texts, saved with save_pretrained."""
    from ecd.params import SeedParams, StudentParams
    from ecd.seeds import load_seeds
    from ecd.student import build_student

    seeds = load_seeds(SeedParams(source=str(ROOT / "data/self-instruct/seed_tasks.jsonl")))
    texts = [s["text"] for s in seeds] + [s["reference"] for s in seeds]
    out = tmp_path_factory.mktemp("tiny") / "model"
    build_student(texts, StudentParams(vocab_size=800, hidden_size=32, intermediate_size=64, num_layers=1,
                                       num_heads=2, num_kv_heads=1), out)
    return out


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def served_model(tiny_model, tmp_path_factory):
    """A real ``transformers serve`` process on 127.0.0.1 serving the tiny model; stopped by its PID."""
    import signal
    import time
    import urllib.request

    port = free_port()
    home = tmp_path_factory.mktemp("hf-home")
    (home / "hub").mkdir()
    e = env(home / "cache")
    e["HF_HOME"] = str(home)
    log = (home / "serve.log").open("w")
    proc = subprocess.Popen(
        [str(Path(VENV_BIN) / "transformers"), "serve", str(tiny_model), "--host", "127.0.0.1", "--port", str(port),
         "--device", "cpu"], stdout=log, stderr=subprocess.STDOUT, env=e)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(url + "/health", timeout=1).status == 200:
                break
        except OSError:
            time.sleep(0.3)
        if proc.poll() is not None:
            raise RuntimeError((home / "serve.log").read_text())
    else:
        proc.kill()
        raise RuntimeError("transformers serve did not start in 90 s")
    yield {"base_url": url + "/v1", "model": str(tiny_model), "pid": proc.pid}
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(autouse=True)
def _own_call_cache(tmp_path, monkeypatch) -> None:
    """In-process calls go to a per-test call cache, never to the working tree's .ecd/cache."""
    monkeypatch.setenv("ECD_CACHE_DIR", str(tmp_path / "call-cache"))


def chat_completion(content: str) -> bytes:
    """An OpenAI chat-completion response body with one choice."""
    import json

    return json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                       "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
                       "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}).encode()


class LoopbackChat:
    """Scripted OpenAI-compatible servers on 127.0.0.1 for the tests of failures and of capable
    models that a tiny local model cannot play. Subclass ``Handler`` and override ``reply``
    (status and body by call number and request) or ``answer`` (the assistant's text by prompt)."""

    from http.server import BaseHTTPRequestHandler as _Base

    class Handler(_Base):
        calls = 0

        def answer(self, prompt: str) -> str:
            raise NotImplementedError

        def reply(self, n: int, body: dict) -> tuple:
            """(status, body) or (status, body, extra headers)."""
            return 200, chat_completion(self.answer(body["messages"][-1]["content"]))

        def do_POST(self) -> None:  # noqa: N802
            import json

            type(self).calls += 1
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                body = json.loads(raw)
            except ValueError:
                body = {}
            status, out, *headers = self.reply(type(self).calls, body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            for name, value in (headers[0] if headers else {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args) -> None:
            pass

    @staticmethod
    def serve(handler: type):
        """Start a threaded server for ``handler``; returns (server, base_url). Call server.shutdown()."""
        import threading
        from http.server import ThreadingHTTPServer

        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, f"http://127.0.0.1:{server.server_port}/v1"
