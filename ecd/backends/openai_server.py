"""The ``openai`` backend: any OpenAI-compatible chat server (``vllm serve``, SGLang, hosted APIs).

Requests run concurrently, each retried on its own; a hosted API's rate limits are kept on our side
(``ratelimit``) and its Batch API can answer the cache's misses at half price (``batch_api``).
"""

from __future__ import annotations

import json
from typing import Any

from ecd.backends.batch_api import generate as generate_in_batches
from ecd.backends.base import FAILED, REJECTED, SAMPLING_SETTINGS, Backend, Completion, OnDone, Request
from ecd.backends.http_policy import RETRY_STATUSES, STOP_STATUSES, unreachable
from ecd.backends.ratelimit import RateLimiter, estimate_tokens
from ecd.errors import EcdError
from ecd.params import ModelParams


class OpenAIBackend(Backend):
    """Any OpenAI-compatible chat server: vLLM's ``vllm serve``, SGLang, hosted APIs.

    Requests run concurrently up to ``concurrency``. A request that fails with a rate limit, a server
    error, a timeout or a malformed reply (no JSON, no choices) is retried with exponential backoff
    and jitter, ``max_retries`` times, and then is a failed call (finish reason ``error``, counted by
    cause for the failure policy). A 4xx other than 401, 403, 404, 408, 409 and 429 rejects that one
    request (finish reason ``rejected``). A server that cannot be reached at all, a wrong key or a
    model the server does not have stop the stage in one line naming the URL. ``n`` answers are
    ``n`` requests with their own seeds, since many servers ignore ``n``.
    """

    name = "openai"
    settings = SAMPLING_SETTINGS | {"base_url", "api_key_env", "concurrency", "timeout", "deadline", "max_retries",
                                    "requests_per_minute", "tokens_per_minute", "batch_api", "batch_poll_seconds",
                                    "structured_output"}
    supports_schema = True

    def __init__(self, params: ModelParams) -> None:
        import os

        super().__init__(params)
        self.api_key = "unused"
        if params.api_key_env:
            key = os.environ.get(params.api_key_env)
            if not key:
                raise EcdError(f"environment variable {params.api_key_env} (teacher.api_key_env) is not set")
            self.api_key = key

    def where(self) -> str:
        return f"{self.params.model} at {self.params.base_url}"

    def identity(self) -> str:
        # the served model, not the URL: the same weights behind another server give the same answers
        return f"openai:{self.params.model}@{self.params.revision or 'served'}"

    def generate(self, requests: list[Request], on_done: OnDone) -> None:
        import asyncio

        if self.params.batch_api:
            asyncio.run(generate_in_batches(self.params, self.api_key, self.identity(),
                                            [self.chat_body(r) for r in requests], on_done))
        else:
            asyncio.run(self._generate(requests, on_done))

    async def _generate(self, requests: list[Request], on_done: OnDone) -> None:
        """``concurrency`` workers take the next request as soon as their last one ends."""
        import asyncio

        client = self._client()
        self.limiter = RateLimiter(self.params.requests_per_minute, self.params.tokens_per_minute)
        queue = iter(range(len(requests)))
        gate = asyncio.Semaphore(self.params.concurrency)

        async def worker() -> None:
            for i in queue:  # one shared iterator: each index is taken by exactly one worker
                on_done(i, await self._one(client, gate, requests[i]))

        try:
            workers = [asyncio.ensure_future(worker()) for _ in range(min(self.params.concurrency, len(requests)))]
            try:
                await asyncio.gather(*workers)
            except BaseException:
                for w in workers:
                    w.cancel()
                raise
        finally:
            await client.close()

    def _client(self) -> Any:
        """The ``openai`` client over aiohttp, with a kept-alive connection per slot.

        At hundreds of requests a second the client's own CPU sets the pace. Measured at concurrency
        256 on one core: the typed call over the default httpx transport costs 4.0 ms of CPU a request,
        the raw request over aiohttp 2.0 ms. The default pool also keeps only 100 connections alive,
        so above that concurrency most requests would open a new one.
        """
        import httpx2
        from openai import AsyncOpenAI, DefaultAioHttpClient

        slots = self.params.concurrency
        http = DefaultAioHttpClient(limits=httpx2.Limits(max_connections=slots, max_keepalive_connections=slots))
        return AsyncOpenAI(base_url=self.params.base_url, api_key=self.api_key, max_retries=self.params.max_retries,
                           timeout=self.params.timeout, http_client=http)

    def chat_body(self, req: Request) -> dict[str, Any]:
        """The chat-completions request body for ``req``: sent directly, or as a Batch API line."""
        p = self.params
        body: dict[str, Any] = {"model": p.model, "messages": req.messages, "max_tokens": p.max_new_tokens,
                                "temperature": p.temperature, "top_p": p.top_p, "seed": req.seed}
        if req.json_schema is not None and self.holds_to_schema:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "reply", "schema": req.json_schema, "strict": True}}
        return body

    async def _one(self, client: Any, gate: Any, req: Request) -> Completion:
        """One request. Rate limits, server errors, timeouts and lost connections are retried by the
        ``openai`` client itself (exponential backoff with jitter, honouring ``Retry-After``);
        replies that arrive malformed are retried here."""
        import asyncio
        import random

        import httpx2
        import openai

        p = self.params
        body = self.chat_body(req)
        try:  # the client would raise while sending, and the retries below would blame the server's reply
            json.dumps(body, allow_nan=False, ensure_ascii=False).encode("utf-8")
        except ValueError:  # a non-finite number, or text that is not valid Unicode (a lone surrogate)
            return Completion("", FAILED, error="unserialisable_request")
        estimate = sum(estimate_tokens(m["content"]) for m in req.messages) + p.max_new_tokens
        for attempt in range(p.max_retries + 1):
            if attempt:
                await asyncio.sleep(min(30.0, 0.5 * 2 ** (attempt - 1)) * (0.5 + random.random()))
            charge = await self.limiter.acquire(estimate)
            try:
                async with gate:
                    # the client's documented raw request: its retries and errors, without typing the
                    # body and the reply into pydantic models (over a third of the client's CPU);
                    # ``timeout`` bounds each read, ``deadline`` the whole request, however its bytes trickle
                    raw = await asyncio.wait_for(client.post("/chat/completions", body=body, cast_to=httpx2.Response),
                                                 p.deadline)
                self.limiter.observe(raw.headers)
                reply = raw.json()
                choice = reply["choices"][0]
                usage = reply.get("usage") or {}
                if charge is not None:
                    self.limiter.settle(charge, usage.get("total_tokens") or 0)
                return Completion(
                    text=choice["message"]["content"] or "",
                    finish_reason=choice.get("finish_reason") or "stop",
                    prompt_tokens=usage.get("prompt_tokens") or 0,
                    completion_tokens=usage.get("completion_tokens") or 0,
                )
            except openai.APITimeoutError as exc:
                cause = _timeout_cause(exc)
                if cause == "refused":
                    raise unreachable(p, exc.__cause__) from None
                return Completion("", FAILED, error=cause)
            except TimeoutError:
                return Completion("", FAILED, error="deadline")
            except openai.APIConnectionError as exc:
                if _cut_reply(exc):
                    return Completion("", FAILED, error="cut_reply")
                raise unreachable(p, exc) from None
            except openai.APIStatusError as exc:
                self.limiter.observe(exc.response.headers)
                status = exc.status_code
                if status in STOP_STATUSES:
                    raise EcdError(f"{p.base_url}: {STOP_STATUSES[status]} ({status}): {exc.message}") from None
                if status < 500 and status not in RETRY_STATUSES:  # this request's own fault: no retry helps
                    return Completion("", REJECTED, error=f"rejected_{status}")
                return Completion("", FAILED, error=f"http_{status}")
            except (ValueError, TypeError, AttributeError, IndexError, KeyError):  # not JSON, or no choices
                pass
        return Completion("", FAILED, error="malformed_reply")


def _cut_reply(exc: BaseException) -> bool:
    """Whether a connection error is a reply that began and was cut short (one call's failure, counted
    by the policy), rather than a server that cannot be reached at all (which stops the stage)."""
    import aiohttp

    cause = exc.__cause__
    while cause is not None:
        if isinstance(cause, (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError)):
            return True
        cause = cause.__cause__
    return False


def _timeout_cause(exc: BaseException) -> str:
    """What a timeout the client reports was: the aiohttp transport reports a refused connection and a
    server that hung up without answering as connect timeouts too. ``refused`` stops the stage (no
    server there); ``disconnected`` and ``timeout`` are one call's failure, counted by the policy."""
    import aiohttp

    cause = exc.__cause__
    while cause is not None:
        if isinstance(cause, aiohttp.ServerDisconnectedError):
            return "disconnected"
        if isinstance(cause, OSError) and not isinstance(cause, TimeoutError):
            return "refused"
        cause = cause.__cause__
    return "timeout"
