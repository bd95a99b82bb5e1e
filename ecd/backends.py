"""Model backends behind one interface, and cached, resumable execution of their calls.

A backend turns a list of ``Request`` (chat messages, a per-request seed, and for the
model-free teacher a structured task) into one ``Completion`` each. ``generate_cached`` puts the
call cache under every backend, commits each batch as it finishes, shows a progress bar and
applies the failure policy, so a stage that is killed or fails half way resumes where it stopped.

Backends here:
- ``programmatic``: a deterministic teacher with no model. It evolves an instruction by appending a
  templated requirement and answers by rewriting the seed's reference answer until it satisfies every
  constraint. It is what lets the pipeline run offline on a CPU in minutes; it is not a language model.
- ``transformers``: any local or hub causal LM, batched ``generate`` with the model's chat template.
- ``openai``: any OpenAI-compatible server (``vllm serve``, SGLang, hosted APIs), concurrent, with retries.
- ``vllm``: vLLM's offline engine on GPU runners (an optional extra, imported only when used).

Failure policy (every backend): a call that still fails after its retries is counted by cause; if
more than ``max_failed_fraction`` of a run's calls failed, ``generate_cached`` raises ``CallsFailed``
after caching every finished call, so the stage writes nothing, DVC records nothing, and the next
run sends only the failed calls. A request the server rejects on its own merits (a 400 for a prompt
over the context length, a content filter) fails that request (finish reason ``rejected``), not the
stage; an authentication or permission error stops at once.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ecd import constraints as C
from ecd.cache import CallCache, call_key
from ecd.errors import EcdError
from ecd.layout import check_model_path
from ecd.params import ModelParams
from ecd.progress import console, progress_bar
from ecd.ratelimit import RateLimiter, estimate_tokens


@dataclass(frozen=True)
class Request:
    messages: list[dict[str, str]]
    seed: int = 0
    #: what the programmatic teacher reads instead of the messages
    task: dict[str, Any] | None = None
    #: the JSON schema the reply must follow, held to it by servers that can (``structured_output``)
    json_schema: dict[str, Any] | None = None


@dataclass
class Completion:
    text: str
    #: ``stop``, ``length`` (cut at max_new_tokens), ``unanswerable`` (programmatic), ``error`` (failed
    #: after retries) or ``rejected`` (the server refused this one request)
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: why a failed or rejected call failed (``http_500``, ``malformed_reply``, ``timeout``, ``rejected_400``)
    error: str = ""


#: called with a request's index in the list handed to ``generate`` and its completion, as it finishes
OnDone = Callable[[int, Completion], None]


#: finish reasons of calls that produced no answer; neither is cached, so a rerun asks again
FAILED, REJECTED = "error", "rejected"


@dataclass
class RunStats:
    calls: int = 0
    hits: int = 0
    misses: int = 0
    completion_tokens: int = 0
    failed: int = 0
    #: failed (after retries) and rejected calls by cause
    failed_by_cause: dict[str, int] = field(default_factory=dict)
    rejected: int = 0

    def metrics(self) -> dict[str, int | dict[str, int]]:
        """The counts a stage reports in its metrics file."""
        return {"calls": self.calls, "cache_hits": self.hits, "cache_misses": self.misses,
                "completion_tokens": self.completion_tokens, "failed_calls": self.failed,
                "rejected_calls": self.rejected, "failed_by_cause": dict(sorted(self.failed_by_cause.items()))}


class CallsFailed(EcdError):
    """More calls failed after their retries than ``max_failed_fraction`` allows."""


class Backend(ABC):
    name: str = "backend"
    #: whether results go through the call cache (the programmatic teacher is cheaper than a lookup)
    cacheable: bool = True
    #: whether answers differ from seed to seed (a model that samples); False: one answer per prompt is all
    samples_vary: bool = True
    #: whether the backend answers by rewriting the seed's reference answer (the programmatic teacher), so
    #: evolution may only add requirements that have a rewrite
    answers_by_rewriting: bool = False
    #: whether the backend can hold a reply to a request's JSON schema (a server's response_format,
    #: vLLM's structured outputs); used when params ask for it with ``structured_output``
    supports_schema: bool = False

    def where(self) -> str:
        """The model (and server) to name in an error line."""
        return self.identity()

    @property
    def holds_to_schema(self) -> bool:
        """Whether replies are constrained to a request's ``json_schema`` (``structured_output`` on a
        backend that supports it)."""
        params = getattr(self, "params", None)
        return bool(self.supports_schema and params is not None and params.structured_output)

    @property
    def max_failed_fraction(self) -> float:
        params = getattr(self, "params", None)
        return params.max_failed_fraction if params is not None else 0.0

    def identity(self) -> str:
        """What makes this model's outputs what they are: name plus revision or weights hash."""
        if getattr(self, "_identity", None) is None:
            self._identity = local_or_hub_identity(self.name, self.params)
        return self._identity

    def sampling(self) -> dict[str, Any]:
        """Sampling parameters that change results (part of every cache key)."""
        p = getattr(self, "params", None)
        if p is None:
            return {}
        return {"temperature": p.temperature, "top_p": p.top_p, "max_new_tokens": p.max_new_tokens}

    @abstractmethod
    def generate(self, requests: list[Request], on_done: OnDone | None = None) -> list[Completion]:
        """One completion per request, in order; ``on_done(i, completion)`` as each one finishes, so
        that the caller can cache it at once instead of waiting for the slowest request."""

    @property
    def batch_size(self) -> int:
        """Requests a backend works on at once (a generation batch, or requests in flight)."""
        params = getattr(self, "params", None)
        return params.batch_size if params is not None else 64

    @property
    def chunk_size(self) -> int:
        """Requests handed to ``generate`` at once. Backends that keep every slot busy by themselves
        (refilling a finished row or a finished request's slot from the rest) take them all."""
        return self.batch_size


# ---------------------------------------------------------------------------------------------
# programmatic


class ProgrammaticBackend(Backend):
    """The model-free teacher. Tasks:

    - ``{"kind": "answer", "reference": str, "constraints": [...]}`` → the reference rewritten to
      satisfy every constraint (empty text, finish reason ``unanswerable``, where a rewrite is missing)
    - ``{"kind": "evolve", "instruction": str, "description": str, "constraints": [...]}`` → JSON
      ``{"instruction": ..., "constraints": [...]}`` with the requirement appended, the same reply
      format an LLM teacher is asked for.
    """

    name = "programmatic"
    cacheable = False
    samples_vary = False
    answers_by_rewriting = True

    def identity(self) -> str:
        return "programmatic:v1"

    def generate(self, requests: list[Request], on_done: OnDone | None = None) -> list[Completion]:
        out = [self._one(req) for req in requests]
        for i, c in enumerate(out):
            if on_done:
                on_done(i, c)
        return out

    @staticmethod
    def _one(req: Request) -> Completion:
        task = req.task or {}
        if task.get("kind") == "answer":
            cons = [C.Constraint.from_record(c) for c in task["constraints"]]
            text = C.apply_rewrites(task["reference"], cons)
            return Completion("", "unanswerable") if text is None else Completion(text, "stop")
        if task.get("kind") == "evolve":
            evolved = f"{task['instruction'].rstrip()} {task['description']}"
            if task.get("reply_format", "json") == "text":
                return Completion(evolved)
            reply = {"instruction": evolved, "constraints": task.get("constraints", [])}
            return Completion(json.dumps(reply, ensure_ascii=False))
        raise EcdError("the programmatic teacher got a request without a task it knows")


# ---------------------------------------------------------------------------------------------
# transformers


def weights_hash(path: Path) -> str:
    """sha256 over the files of a local model directory (names and contents)."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.iterdir() if p.is_file()):
        h.update(f.name.encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def local_or_hub_identity(kind: str, params: ModelParams) -> str:
    """``kind:sha256:…`` for a local model directory (its files hashed: the same weights under another
    folder name are the same model, so a copied student reuses its original's answers),
    ``kind:id@revision`` for a hub id."""
    local = Path(params.model).expanduser()
    if local.exists():
        return f"{kind}:sha256:{weights_hash(local)}"
    return f"{kind}:{params.model}@{params.revision or 'main'}"


_FALLBACK_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] | capitalize }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


class TransformersBackend(Backend):
    """A causal LM through ``transformers``: batched, left-padded generation with a seed per request.

    Sampling draws each row's next token from that row's own generator, so a request gives the same
    text whatever batch it lands in.
    """

    name = "transformers"

    def __init__(self, params: ModelParams) -> None:
        self.params = params
        self._model = None
        self._tok = None
        self._identity: str | None = None
        check_model_path(params.model)

    def _load(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        p = self.params
        device = p.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if p.dtype == "auto":
            dtype = torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32
        else:
            dtype = getattr(torch, p.dtype)
        try:
            tok = AutoTokenizer.from_pretrained(
                p.model, revision=p.revision, padding_side="left", trust_remote_code=p.trust_remote_code
            )
            # weights read into memory rather than mapped when they will be packed: the mapped file's
            # pages would stay resident beside the packed copy (1.5 GB instead of 1.1 for SmolLM2-135M)
            packing = torch.device(device).type == "cpu" and dtype == torch.float32
            model = AutoModelForCausalLM.from_pretrained(
                p.model, revision=p.revision, dtype=dtype, trust_remote_code=p.trust_remote_code,
                disable_mmap=packing,
            )
        except OSError as exc:
            raise EcdError(f"cannot load model {p.model!r}: {str(exc).splitlines()[0]}") from None
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        if not tok.chat_template:
            warnings.warn(f"{p.model} has no chat template; using a plain 'User:/Assistant:' template", stacklevel=2)
            tok.chat_template = _FALLBACK_TEMPLATE
        model.to(device).eval()
        if packing:
            from ecd.generation import pack_linears

            pack_linears(model)
        model.config.use_cache = True
        self._model, self._tok, self._device = model, tok, device

    @property
    def chunk_size(self) -> int:
        return UNCHUNKED  # the decode loop refills finished rows' slots from the rest

    def generate(self, requests: list[Request], on_done: OnDone | None = None) -> list[Completion]:
        from ecd.generation import Generated, generate_continuous, greedy
        import torch

        from ecd.packed_generation import cache_bytes_per_token, generate_packed, supports_packed

        self._load()
        tok, model, p = self._tok, self._model, self.params
        texts = [tok.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True) for r in requests]
        prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        eos = set(_as_list(model.generation_config.eos_token_id)) | {tok.eos_token_id}
        pick = SeededSampler([r.seed for r in requests], p.temperature, p.top_p).pick if p.temperature > 0 else greedy

        def completion(i: int, g: Generated) -> Completion:
            return Completion(text=tok.decode(g.tokens, skip_special_tokens=True),
                              finish_reason="stop" if g.stopped else "length",
                              prompt_tokens=len(prompts[i]), completion_tokens=len(g.tokens) + g.stopped)

        report = (lambda i, g: on_done(i, completion(i, g))) if on_done else None
        if torch.device(self._device).type == "cpu" and supports_packed(model):
            done = generate_packed(model, prompts, max_new_tokens=p.max_new_tokens, eos_ids=eos, width=p.batch_size,
                                   cache_tokens=int(p.kv_cache_gib * 2**30 / cache_bytes_per_token(
                                       model.config, next(model.parameters()).element_size())),
                                   step_tokens=p.step_tokens, pick=pick, device=self._device, on_done=report)
        else:  # attention the packed loop does not compute (sliding windows, soft-capping, other families),
            # and GPUs, where a step is bound by kernel launches and the padded loop's few large ones won
            done = generate_continuous(model, prompts, max_new_tokens=p.max_new_tokens, eos_ids=eos,
                                       pad_id=tok.pad_token_id, width=p.batch_size, pick=pick, device=self._device,
                                       on_done=report)
        return [completion(i, g) for i, g in enumerate(done)]


def _as_list(x: Any) -> list[int]:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


class SeededSampler:
    """Sampling where each request draws from its own ``torch.Generator`` (seeded by the request),
    so a request gives the same text whatever batch it lands in and whichever rows are in flight."""

    def __init__(self, seeds: list[int], temperature: float, top_p: float) -> None:
        import torch

        self.temperature, self.top_p = temperature, top_p
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]

    def pick(self, logits: Any, rows: list[int]) -> Any:
        """The next token of each row in flight (``rows``: the request index of each row)."""
        import torch

        probs = torch.softmax(logits.float() / self.temperature, dim=-1).cpu()
        if self.top_p < 1.0:
            sorted_p, idx = probs.sort(dim=-1, descending=True)
            drop = sorted_p.cumsum(-1) - sorted_p > self.top_p
            sorted_p[drop] = 0.0
            probs = torch.zeros_like(probs).scatter(-1, idx, sorted_p)
        drawn = [torch.multinomial(probs[k], 1, generator=self.generators[r]).item() for k, r in enumerate(rows)]
        return torch.tensor(drawn, dtype=torch.long, device=logits.device)


# ---------------------------------------------------------------------------------------------
# cached execution


def generate_cached(
    backend: Backend,
    requests: list[Request],
    *,
    template_version: str,
    description: str,
    cache: CallCache | None = None,
) -> tuple[list[Completion], RunStats]:
    """Run requests through the cache and the backend, committing each batch as it finishes; then
    apply the failure policy (``CallsFailed`` when too many calls failed; see the module docstring)."""
    stats = RunStats(calls=len(requests))
    results: list[Completion | None] = [None] * len(requests)
    keys: list[str] = []
    if backend.cacheable:
        cache = cache or CallCache()
        identity, sampling = backend.identity(), backend.sampling()
        keys = [call_key(identity, _key_fields(r, sampling, template_version, backend)) for r in requests]
        found = cache.get_many(list(dict.fromkeys(keys)))
        for i, k in enumerate(keys):
            if k in found:
                results[i] = Completion(**found[k])
    todo = [i for i, r in enumerate(results) if r is None]
    stats.hits = len(requests) - len(todo)
    stats.misses = len(todo) if backend.cacheable else 0
    if backend.cacheable:
        cache.start_run(description, stats.hits, stats.misses)
    # longest prompts first: similar lengths share a batch, and the slowest batch runs while the bar is fresh
    todo.sort(key=lambda i: -sum(len(m["content"]) for m in requests[i].messages))
    with progress_bar(description, total=len(requests), completed=stats.hits) as bar:
        commit = _Committer(backend, cache, keys) if backend.cacheable else None
        for start in range(0, len(todo), backend.chunk_size):
            batch = todo[start : start + backend.chunk_size]

            def done(k: int, c: Completion, batch: list[int] = batch) -> None:
                results[batch[k]] = c
                if commit:
                    commit.add(batch[k], c)
                bar.advance(1, tokens=c.completion_tokens)

            try:
                backend.generate([requests[i] for i in batch], on_done=done)
            finally:  # a stage stopped by an error or a signal keeps what was already answered
                if commit:
                    commit.flush()
    done = [r for r in results if r is not None]
    _count(stats, done)
    if backend.cacheable:
        failed = f", {stats.failed} failed, {stats.rejected} rejected" if stats.failed or stats.rejected else ""
        console.print(f"{description}: call cache {stats.hits} hits, {stats.misses} misses{failed}")
    _apply_failure_policy(backend, stats, description)
    return done, stats


class _Committer:
    """Puts finished calls into the cache in small, frequent commits (every ``COMMIT_EVERY`` calls or
    ``COMMIT_SECONDS``), so that a kill loses only what was in flight. Failed and rejected calls are
    not cached: a rerun tries them again."""

    def __init__(self, backend: Backend, cache: CallCache, keys: list[str]) -> None:
        self.backend, self.cache, self.keys = backend, cache, keys
        self.pending: dict[str, dict[str, Any]] = {}
        self.last = time.monotonic()

    def add(self, i: int, c: Completion) -> None:
        if c.finish_reason not in (FAILED, REJECTED):
            self.pending[self.keys[i]] = asdict(c)
        if len(self.pending) >= COMMIT_EVERY or time.monotonic() - self.last > COMMIT_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.cache.put_many(self.backend.identity(), self.pending)
        self.pending, self.last = {}, time.monotonic()


COMMIT_EVERY, COMMIT_SECONDS = 32, 5.0
#: a chunk size meaning "every request at once"
UNCHUNKED = 1 << 62


def _key_fields(req: Request, sampling: dict[str, Any], template_version: str, backend: Backend) -> dict[str, Any]:
    """What a call's result depends on; a schema only where the backend holds replies to it."""
    fields = {"messages": req.messages, "seed": req.seed, "sampling": sampling, "template": template_version}
    if req.json_schema is not None and backend.holds_to_schema:
        fields["schema"] = req.json_schema
    return fields


def _count(stats: RunStats, completions: list[Completion]) -> None:
    causes: Counter[str] = Counter()
    for c in completions:
        stats.completion_tokens += c.completion_tokens
        if c.finish_reason in (FAILED, REJECTED):
            causes[c.error or c.finish_reason] += 1
            stats.failed += c.finish_reason == FAILED
            stats.rejected += c.finish_reason == REJECTED
    stats.failed_by_cause = dict(causes)


def _apply_failure_policy(backend: Backend, stats: RunStats, description: str) -> None:
    if stats.failed == 0 or stats.failed <= backend.max_failed_fraction * stats.calls:
        return
    causes = ", ".join(f"{k} ×{v}" for k, v in sorted(stats.failed_by_cause.items()))
    raise CallsFailed(
        f"{description}: {stats.failed} of {stats.calls} calls to {backend.where()} failed after retries ({causes}); "
        f"the {stats.calls - stats.failed - stats.rejected} answered calls are cached, so running the stage again "
        f"sends only the failed ones (max_failed_fraction {backend.max_failed_fraction} allows "
        f"{int(backend.max_failed_fraction * stats.calls)})"
    )


# ---------------------------------------------------------------------------------------------
# openai


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
    supports_schema = True

    def __init__(self, params: ModelParams) -> None:
        import os

        self.params = params
        self.api_key = "unused"
        if params.api_key_env:
            key = os.environ.get(params.api_key_env)
            if not key:
                raise EcdError(f"environment variable {params.api_key_env} (teacher.api_key_env) is not set")
            self.api_key = key

    @property
    def batch_size(self) -> int:
        return self.params.concurrency

    @property
    def chunk_size(self) -> int:
        return UNCHUNKED  # a sliding window: as one request ends the next starts

    def where(self) -> str:
        return f"{self.params.model} at {self.params.base_url}"

    def identity(self) -> str:
        # the served model, not the URL: the same weights behind another server give the same answers
        return f"openai:{self.params.model}@{self.params.revision or 'served'}"

    def generate(self, requests: list[Request], on_done: OnDone | None = None) -> list[Completion]:
        import asyncio

        if self.params.batch_api:
            from ecd import batch_api

            return batch_api.generate(self, requests, on_done)
        return asyncio.run(self._generate(requests, on_done))

    async def _generate(self, requests: list[Request], on_done: OnDone | None) -> list[Completion]:
        """``concurrency`` workers take the next request as soon as their last one ends."""
        import asyncio

        client = self._client()
        self.limiter = RateLimiter(self.params.requests_per_minute, self.params.tokens_per_minute)
        results: list[Completion | None] = [None] * len(requests)
        queue = iter(range(len(requests)))
        gate = asyncio.Semaphore(self.params.concurrency)

        async def worker() -> None:
            for i in queue:  # one shared iterator: each index is taken by exactly one worker
                results[i] = await self._one(client, gate, requests[i])
                if on_done:
                    on_done(i, results[i])

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
        return results  # type: ignore[return-value]

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
        estimate = sum(estimate_tokens(m["content"]) for m in req.messages) + p.max_new_tokens
        for attempt in range(p.max_retries + 1):
            if attempt:
                await asyncio.sleep(min(30.0, 0.5 * 2 ** (attempt - 1)) * (0.5 + random.random()))
            charge = await self.limiter.acquire(estimate)
            try:
                async with gate:
                    # the client's documented raw request: its retries and errors, without typing the
                    # body and the reply into pydantic models (over a third of the client's CPU)
                    raw = await client.post("/chat/completions", body=body, cast_to=httpx2.Response)
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
            except openai.APIConnectionError as exc:
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


def unreachable(p: ModelParams, detail: object) -> EcdError:
    """The one-line error for a server that no retry reached."""
    return EcdError(f"cannot reach {p.base_url} after {p.max_retries + 1} tries: {detail}")


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


#: statuses that no retry and no other request can fix: the stage stops at once
STOP_STATUSES = {401: "authentication failed (check the key variable)", 403: "permission denied",
                 404: "not found (check base_url and the model name)"}
#: statuses that a later try may not meet: timeouts, conflicts, rate limits (and every 5xx)
RETRY_STATUSES = {408, 409, 429}


# ---------------------------------------------------------------------------------------------
# vllm


class VLLMBackend(Backend):
    """vLLM's offline engine (``vllm.LLM``) for GPU runners, with tensor and data parallelism.

    An optional extra (``pip install ecd[vllm]``), imported only when this backend is used. Each
    request carries its own seed in ``SamplingParams``, so results do not depend on batching.
    """

    name = "vllm"
    supports_schema = True

    def __init__(self, params: ModelParams) -> None:
        self.params = params
        self._llm = None
        self._identity: str | None = None

    def _vllm(self) -> Any:
        try:
            import vllm
        except ImportError:
            raise EcdError(
                "the vllm backend needs vLLM: `pip install ecd[vllm]` on a CUDA machine (see docs/backends.md)"
            ) from None
        return vllm

    @property
    def chunk_size(self) -> int:
        return UNCHUNKED  # the engine schedules every request itself

    def generate(self, requests: list[Request], on_done: OnDone | None = None) -> list[Completion]:
        vllm = self._vllm()
        p = self.params
        if self._llm is None:
            self._llm = vllm.LLM(
                model=p.model, revision=p.revision, tensor_parallel_size=p.tensor_parallel_size,
                data_parallel_size=p.data_parallel_size, dtype=p.dtype, seed=p.seed,
                trust_remote_code=p.trust_remote_code,
            )
        sampling = []
        for r in requests:
            extra = {}
            if r.json_schema is not None and self.holds_to_schema:  # vLLM >= 0.12's structured outputs
                from vllm.sampling_params import StructuredOutputsParams

                extra["structured_outputs"] = StructuredOutputsParams(json=r.json_schema)
            sampling.append(vllm.SamplingParams(temperature=p.temperature, top_p=p.top_p, max_tokens=p.max_new_tokens,
                                                seed=r.seed, **extra))
        outputs = self._llm.chat([r.messages for r in requests], sampling, use_tqdm=False)
        results = []
        for i, out in enumerate(outputs):
            gen = out.outputs[0]
            results.append(Completion(
                text=gen.text, finish_reason=gen.finish_reason or "stop",
                prompt_tokens=len(out.prompt_token_ids or []), completion_tokens=len(gen.token_ids or []),
            ))
            if on_done:
                on_done(i, results[-1])
        return results


def make_backend(params: ModelParams) -> Backend:
    from ecd.cluster import RayBackend

    backends = {"programmatic": lambda p: ProgrammaticBackend(), "transformers": TransformersBackend,
                "openai": OpenAIBackend, "vllm": VLLMBackend, "ray": RayBackend}
    if params.backend not in backends:
        raise EcdError(f"unknown backend {params.backend!r}")
    return backends[params.backend](params)
