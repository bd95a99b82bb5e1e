"""The openai backend against a real OpenAI-compatible server (``transformers serve`` on loopback),
plus the failures a real deployment meets: no server, malformed replies, a missing key."""

from __future__ import annotations

import json

import pytest

from conftest import LoopbackChat, chat_completion, free_port
from ecd.backends import CallsFailed, OpenAIBackend, Request, answer_all, generate_cached
from ecd.cache import CallCache
from ecd.errors import EcdError
from ecd.params import ModelParams

PROMPTS = ["Say hello.", "Name a colour.", "Count to three.", "What is a map?", "Describe rain.", "Hi"]


def backend(base_url: str, model: str = "m", **kw) -> OpenAIBackend:
    kw.setdefault("temperature", 0.0)
    return OpenAIBackend(ModelParams(backend="openai", model=model, base_url=base_url, max_new_tokens=8, **kw))


def requests() -> list[Request]:
    return [Request(messages=[{"role": "user", "content": p}], seed=i) for i, p in enumerate(PROMPTS)]


def test_generates_through_a_real_server_and_caches(served_model, tmp_path) -> None:
    cache = CallCache(tmp_path / "c.sqlite")
    b4 = backend(served_model["base_url"], served_model["model"], concurrency=4)
    first, s1 = generate_cached(b4, requests(), template_version="t", description="cold", cache=cache)
    assert (s1.hits, s1.misses, s1.failed) == (0, len(PROMPTS), 0)
    assert all(c.finish_reason in {"stop", "length"} for c in first)
    assert any(c.text for c in first)
    # another concurrency changes no result: every call is a cache hit
    b1 = backend(served_model["base_url"], served_model["model"], concurrency=1)
    again, s2 = generate_cached(b1, requests(), template_version="t", description="warm", cache=cache)
    assert (s2.hits, s2.misses) == (len(PROMPTS), 0)
    assert [c.text for c in again] == [c.text for c in first]


def test_greedy_answers_do_not_depend_on_concurrency(served_model) -> None:
    texts = []
    for concurrency in (1, 6):
        b = backend(served_model["base_url"], served_model["model"], concurrency=concurrency)
        texts.append([c.text for c in answer_all(b, requests())])
    assert texts[0] == texts[1]


def test_unreachable_server_is_named_after_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(EcdError) as info:
        answer_all(backend(url, max_retries=2), requests()[:1])
    assert str(info.value).startswith(f"cannot reach {url} after 3 tries")


class _HangsUp(LoopbackChat.Handler):
    """Reads the request, then closes the connection without a word."""

    def do_POST(self) -> None:  # noqa: N802
        type(self).calls += 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.close_connection = True


def test_a_server_that_hangs_up_is_retried_then_a_failed_call_not_a_stop(tmp_path) -> None:
    server, url = LoopbackChat.serve(_HangsUp)
    try:
        with pytest.raises(CallsFailed, match=r"failed after retries \(disconnected ×2\)"):
            generate_cached(backend(url, max_retries=2), requests()[:2], template_version="t",
                            description="hang", cache=CallCache(tmp_path / "c.sqlite"))
        assert _HangsUp.calls == 2 * 3  # the client's own retries: one try and two more for each request
    finally:
        server.shutdown()


class _Malformed(LoopbackChat.Handler):
    """No choices, or not JSON at all."""

    def reply(self, n, body):
        return 200, b'{"id": "x", "choices": []}' if n % 2 else b'{"choices": [ not json'


def test_malformed_replies_are_retried_then_counted_as_failed(tmp_path) -> None:
    server, url = LoopbackChat.serve(_Malformed)
    try:
        with pytest.raises(CallsFailed, match=r"bad: 2 of 2 calls to m at .* failed after retries \(malformed_reply ×2\)"):
            generate_cached(backend(url, max_retries=2), requests()[:2], template_version="t",
                            description="bad", cache=CallCache(tmp_path / "c.sqlite"))
        assert _Malformed.calls == 2 * 3  # each request: one try and two retries
        # a run that tolerates failures gets them as counted failed calls
        out, stats = generate_cached(backend(url, max_retries=0, max_failed_fraction=1.0), requests()[:2],
                                     template_version="t", description="bad", cache=CallCache(tmp_path / "c.sqlite"))
    finally:
        server.shutdown()
    assert stats.failed == 2 and [c.finish_reason for c in out] == ["error", "error"]
    assert stats.failed_by_cause == {"malformed_reply": 2}
    assert CallCache(tmp_path / "c.sqlite").count() == 0  # failed calls are not cached


class _Busy(LoopbackChat.Handler):
    """Answers 429, then 503, then a valid reply: a rate-limited, overloaded server."""

    def reply(self, n, body):
        if n <= 2:
            return (429 if n == 1 else 503), b"{}"
        return 200, chat_completion("fine")


def test_rate_limits_and_server_errors_are_retried() -> None:
    server, url = LoopbackChat.serve(_Busy)
    try:
        out = answer_all(backend(url, max_retries=3), requests()[:1])
    finally:
        server.shutdown()
    assert _Busy.calls == 3
    assert (out[0].text, out[0].finish_reason, out[0].completion_tokens) == ("fine", "stop", 1)


def test_missing_key_variable_is_named(monkeypatch) -> None:
    monkeypatch.delenv("ECD_NO_SUCH_KEY", raising=False)
    with pytest.raises(EcdError, match="environment variable ECD_NO_SUCH_KEY"):
        backend("http://127.0.0.1:1/v1", api_key_env="ECD_NO_SUCH_KEY")


def test_params_need_a_base_url() -> None:
    from ecd.params import validate_params

    with pytest.raises(EcdError, match="needs base_url"):
        validate_params({"teacher": {"backend": "openai", "model": "m"}})


@pytest.mark.slow
def test_api_key_never_leaks(served_model, tmp_path) -> None:
    from conftest import make_project

    secret = "sk-ecd-test-" + "9" * 24
    proj = make_project(tmp_path / "proj", {
        "seeds": {"limit": 4},
        "teacher": {"backend": "openai", "model": served_model["model"], "base_url": served_model["base_url"],
                    "api_key_env": "ECD_TEST_API_KEY", "max_new_tokens": 8, "concurrency": 2},
        "evolve": {"chains_per_seed": 1},
        "rounds": {"r1": {"prev": "r0"}},
    })
    proj.env["ECD_TEST_API_KEY"] = secret
    proj.commit("openai teacher")
    proc = proj.run("dvc", "repro", "pair")
    assert secret not in proc.stdout + proc.stderr
    for path in [proj.path / "params.yaml", proj.path / "dvc.lock", *proj.path.rglob("*.json*")]:
        assert secret not in path.read_text(errors="ignore"), path
    cache_dir = tmp_path / "proj-cache"
    blobs = b"".join(p.read_bytes() for p in cache_dir.rglob("*") if p.is_file())
    assert blobs and secret.encode() not in blobs
    r0 = [json.loads(line) for line in (proj.path / "data/rounds/r0/responses.jsonl").read_text().splitlines()]
    assert len(r0) == 4 and all(r["model"].startswith("openai:") for r in r0)


class _KeyRevoked(LoopbackChat.Handler):
    """Answers three requests, then says the key is no longer valid."""

    def reply(self, n, body):
        if n <= 3:
            return 200, chat_completion("answer " + body["messages"][-1]["content"])
        return 401, b'{"error": {"message": "key revoked"}}'


def test_a_stage_stopped_mid_run_keeps_the_calls_already_answered(tmp_path) -> None:
    server, url = LoopbackChat.serve(_KeyRevoked)
    cache = CallCache(tmp_path / "c.sqlite")
    try:
        reqs = [Request(messages=[{"role": "user", "content": f"q{i}"}], seed=i) for i in range(8)]
        with pytest.raises(EcdError, match="authentication failed"):
            generate_cached(backend(url, concurrency=1), reqs, template_version="t", description="d", cache=cache)
    finally:
        server.shutdown()
    assert cache.count() == 3  # committed although the stage stopped before its first regular commit
