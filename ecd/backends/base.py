"""The interface every backend implements: requests in, one completion each out, by one channel.

A backend turns a list of ``Request`` (chat messages, a per-request seed, and for the programmatic
teacher a structured task) into one ``Completion`` each, handed to ``on_done(i, completion)`` as
each request finishes: the one way answers come back, so that the caller can cache each at once
instead of waiting for the slowest. ``answer_all`` collects them in order where a caller wants a
list; an index left unanswered is an error there and in ``generate_cached``, never a silent drop.

Each backend declares the model settings (``ModelParams`` fields) it reads; ``check_settings``
refuses a section that sets one the chosen backend would ignore, naming it, instead of running as
if the setting held.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ecd.errors import EcdError
from ecd.params import ModelParams
from ecd.schema import Message


@dataclass(frozen=True)
class Request:
    messages: list[Message]
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

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Completion":
        """A completion read back from the call cache; ``TypeError`` when the record is not one."""
        c = cls(**record)
        if not (isinstance(c.text, str) and isinstance(c.finish_reason, str) and isinstance(c.error, str)
                and type(c.prompt_tokens) is int and type(c.completion_tokens) is int):
            raise TypeError("not a completion")
        return c


#: called with a request's index in the list handed to ``generate`` and its completion, as it finishes
OnDone = Callable[[int, Completion], None]

#: finish reasons of calls that produced no answer; neither is cached, so a rerun asks again
FAILED, REJECTED = "error", "rejected"

#: settings read for every backend: the choice itself, the failure policy (``generate_cached``) and
#: the seed the stages derive each request's seed from
COMMON_SETTINGS = frozenset({"backend", "max_failed_fraction", "seed"})
#: what decides a model's answers wherever it runs
SAMPLING_SETTINGS = frozenset({"model", "revision", "max_new_tokens", "temperature", "top_p"})


class Backend(ABC):
    name: ClassVar[str] = "backend"
    #: the ``ModelParams`` fields this backend reads besides ``COMMON_SETTINGS``
    settings: ClassVar[frozenset[str]] = frozenset()
    #: whether results go through the call cache (the programmatic teacher is cheaper than a lookup)
    cacheable: ClassVar[bool] = True
    #: whether answers differ from seed to seed (a model that samples); False: one answer per prompt is all
    samples_vary: ClassVar[bool] = True
    #: whether the backend answers by rewriting the seed's reference answer (the programmatic teacher), so
    #: evolution may only add requirements that have a rewrite
    answers_by_rewriting: ClassVar[bool] = False
    #: whether the backend can hold a reply to a request's JSON schema (a server's response_format,
    #: vLLM's structured outputs); used when params ask for it with ``structured_output``
    supports_schema: bool = False

    def __init__(self, params: ModelParams) -> None:
        check_settings(type(self), params)
        self.params = params
        self._identity: str | None = None

    @classmethod
    def reads(cls, params: ModelParams) -> frozenset[str]:
        """The settings this backend reads for ``params`` (a backend that wraps another adds its)."""
        return COMMON_SETTINGS | cls.settings

    def where(self) -> str:
        """The model (and server) to name in an error line."""
        return self.identity()

    @property
    def holds_to_schema(self) -> bool:
        """Whether replies are constrained to a request's ``json_schema`` (``structured_output`` on a
        backend that supports it)."""
        return self.supports_schema and self.params.structured_output

    @property
    def max_failed_fraction(self) -> float:
        return self.params.max_failed_fraction

    def identity(self) -> str:
        """What makes this model's outputs what they are: name plus revision or weights hash."""
        if self._identity is None:
            self._identity = local_or_hub_identity(self.name, self.params)
        return self._identity

    def sampling(self) -> dict[str, Any]:
        """Sampling parameters that change results (part of every cache key)."""
        p = self.params
        return {"temperature": p.temperature, "top_p": p.top_p, "max_new_tokens": p.max_new_tokens}

    @abstractmethod
    def generate(self, requests: list[Request], on_done: OnDone) -> None:
        """Answer every request: ``on_done(i, completion)`` once per request index, as each finishes."""


def check_settings(backend: type[Backend], params: ModelParams) -> None:
    """Refuse a model section that sets, away from its default, a setting ``backend`` does not read."""
    read = backend.reads(params)
    ignored = sorted(k for k in params.model_fields_set - read
                     if getattr(params, k) != ModelParams.model_fields[k].default)
    if ignored:
        raise EcdError(f"backend {backend.name!r} does not read {', '.join(ignored)}: remove "
                       f"{'it' if len(ignored) == 1 else 'them'} or choose a backend that reads "
                       f"{'it' if len(ignored) == 1 else 'them'} (docs/backends.md lists each backend's settings)")


def answer_all(backend: Backend, requests: list[Request], on_done: OnDone | None = None) -> list[Completion]:
    """Every request's completion, in order: ``generate``'s answers collected from its one channel
    (and passed on to ``on_done`` as they come). A request answered twice or never is an error."""
    results: list[Completion | None] = [None] * len(requests)

    def done(i: int, c: Completion) -> None:
        if results[i] is not None:
            raise EcdError(f"backend {backend.name!r} answered request {i} twice")
        results[i] = c
        if on_done:
            on_done(i, c)

    backend.generate(requests, done)
    missing = [i for i, c in enumerate(results) if c is None]
    if missing:
        raise EcdError(f"{backend.where()} returned no answer for {len(missing)} of {len(results)} requests "
                       f"(the first: request {missing[0]})")
    return results  # type: ignore[return-value]


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
    local = Path(str(params.model)).expanduser()
    if local.exists():
        return f"{kind}:sha256:{weights_hash(local)}"
    return f"{kind}:{params.model}@{params.revision or 'main'}"
