"""Hosted APIs at their limits: a scripted loopback server that enforces a request rate and answers
429 with Retry-After and x-ratelimit headers when it is exceeded, as OpenAI-style servers do."""

from __future__ import annotations

import threading
import time

import pytest

from conftest import LoopbackChat, chat_completion
from ecd.backends import OpenAIBackend, Request, generate_cached
from ecd.cache import CallCache
from ecd.params import ModelParams
from ecd.backends.ratelimit import RateLimiter, parse_reset

RATE = 4  # requests the server allows in any rolling second, as hosted APIs count them per minute


class _Limited(LoopbackChat.Handler):
    lock = threading.Lock()
    refused = 0
    answered: list[float] = []

    def reply(self, n: int, body: dict) -> tuple:
        cls = type(self)
        with cls.lock:
            now = time.monotonic()
            recent = [t for t in cls.answered if now - t < 1.0]
            if len(recent) >= RATE:
                cls.refused += 1
                wait = recent[0] + 1.0 - now
                return 429, b'{"error": {"message": "rate limit"}}', {
                    "Retry-After": f"{wait:.3f}", "x-ratelimit-remaining-requests": "0",
                    "x-ratelimit-reset-requests": f"{int(wait * 1000) + 1}ms"}
            cls.answered.append(now)
            left = RATE - len(recent) - 1
        return 200, chat_completion("ok " + body["messages"][-1]["content"]), {
            "x-ratelimit-remaining-requests": str(left)}


@pytest.fixture
def limited():
    handler = type("Limited", (_Limited,), {"lock": threading.Lock(), "refused": 0, "answered": []})
    server, url = LoopbackChat.serve(handler)
    yield handler, url
    server.shutdown()


def _run(url: str, tmp_path, **caps) -> tuple[list, object]:
    backend = OpenAIBackend(ModelParams(backend="openai", model="m", base_url=url, concurrency=8,
                                        max_retries=20, timeout=10, **caps))
    requests = [Request(messages=[{"role": "user", "content": f"q{i}"}]) for i in range(16)]
    return generate_cached(backend, requests, template_version="t", description="rl",
                           cache=CallCache(tmp_path / "calls.sqlite"))


def test_a_cap_below_the_servers_rate_is_never_refused_and_keeps_close_to_it(limited, tmp_path) -> None:
    handler, url = limited
    cap = 0.9 * RATE  # a user's cap a little under the published limit, so that network jitter never trips it
    done, stats = _run(url, tmp_path, requests_per_minute=int(cap * 60))
    assert stats.failed == 0 and all(c.text.startswith("ok q") for c in done)
    assert handler.refused == 0
    span = handler.answered[-1] - handler.answered[0]
    achieved = (len(handler.answered) - 1) / span
    # not above the cap (the server would have refused), and not idling far below it
    assert 0.5 * cap <= achieved <= cap * 1.05


def test_without_a_cap_retry_after_is_honoured_and_no_call_fails(limited, tmp_path) -> None:
    handler, url = limited
    done, stats = _run(url, tmp_path)
    assert handler.refused > 0  # eight at once: the server refused some and said when to come back
    assert stats.failed == 0 and stats.rejected == 0
    assert sorted(c.text for c in done) == sorted(f"ok q{i}" for i in range(16))


@pytest.mark.parametrize("value,seconds", [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1.5", 1.5),
                                           ("2h1m", 7260.0), ("soon", None), ("", None), (None, None)])
def test_reset_headers_parse(value, seconds) -> None:
    assert parse_reset(value) == seconds


def test_the_token_cap_holds_over_a_rolling_minute() -> None:
    import asyncio

    class Fast(RateLimiter):
        WINDOW = 0.5  # the same logic over half a second

    async def go() -> list[float]:
        limiter = Fast(tokens_per_minute=100)
        times = []
        for _ in range(6):
            await limiter.acquire(40)
            times.append(time.monotonic())
        return times

    times = asyncio.run(go())
    # at most two 40-token requests in any half second
    for i in range(2, len(times)):
        assert times[i] - times[i - 2] >= Fast.WINDOW - 0.01
