"""Cached, resumable execution of a stage's calls, and the failure policy every backend shares.

``generate_cached`` puts the call cache in front of a backend: hits are read, misses are sent, each
answer is committed to the cache within seconds of arriving, a progress bar follows them, and a
stage killed or failed half way resumes where it stopped.

Failure policy: a call that still fails after its retries is counted by cause; if more than
``max_failed_fraction`` of a run's calls failed, ``generate_cached`` raises ``CallsFailed`` after
caching every finished call, so the stage writes nothing, DVC records nothing, and the next run sends
only the failed calls. A request the server rejects on its own merits (a 400 for a prompt over the
context length, a content filter) fails that request (finish reason ``rejected``), not the stage; an
authentication or permission error stops at once.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from ecd.backends.base import FAILED, REJECTED, Backend, Completion, Request, answer_all
from ecd.cache import CallCache, call_key
from ecd.errors import EcdError
from ecd.progress import console, progress_bar


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

    def add(self, other: "RunStats") -> "RunStats":
        """This run's counts with ``other``'s added: a stage that calls a chunk at a time sums its chunks."""
        self.calls += other.calls
        self.hits += other.hits
        self.misses += other.misses
        self.completion_tokens += other.completion_tokens
        self.failed += other.failed
        self.rejected += other.rejected
        self.failed_by_cause = dict(Counter(self.failed_by_cause) + Counter(other.failed_by_cause))
        return self

    def metrics(self) -> dict[str, int | dict[str, int]]:
        """The counts a stage reports in its metrics file."""
        return {"calls": self.calls, "cache_hits": self.hits, "cache_misses": self.misses,
                "completion_tokens": self.completion_tokens, "failed_calls": self.failed,
                "rejected_calls": self.rejected, "failed_by_cause": dict(sorted(self.failed_by_cause.items()))}


class CallsFailed(EcdError):
    """More calls failed after their retries than ``max_failed_fraction`` allows."""


def generate_cached(
    backend: Backend,
    requests: list[Request],
    *,
    template_version: str,
    description: str,
    cache: CallCache | None = None,
    check_failures: bool = True,
) -> tuple[list[Completion], RunStats]:
    """Run requests through the cache and the backend, committing each batch as it finishes; then
    apply the failure policy (``CallsFailed`` when too many calls failed; see the module docstring).
    ``check_failures=False``: leave the policy to the caller, which calls :func:`apply_failure_policy`
    on the stats of all its calls (a stage that sends a chunk of seeds at a time)."""
    stats = RunStats(calls=len(requests))
    results: list[Completion | None] = [None] * len(requests)
    keys: list[str] = []
    store = (cache or CallCache()) if backend.cacheable else None
    if store is not None:
        identity, sampling = backend.identity(), backend.sampling()
        keys = [call_key(identity, _key_fields(r, sampling, template_version, backend)) for r in requests]
        found = store.get_many(list(dict.fromkeys(keys)))
        unreadable = set()
        for i, k in enumerate(keys):
            if k in found:
                try:
                    results[i] = Completion.from_record(found[k])
                except TypeError:  # a whole JSON object, but not a completion: damaged, computed again
                    unreadable.add(k)
        if unreadable:
            store.drop(sorted(unreadable))
    todo = [i for i, r in enumerate(results) if r is None]
    stats.hits = len(requests) - len(todo)
    stats.misses = len(todo) if backend.cacheable else 0
    if store is not None:
        store.start_run(description, stats.hits, stats.misses)
    # longest prompts first: the slowest requests start while the bar is fresh
    todo.sort(key=lambda i: -sum(len(m["content"]) for m in requests[i].messages))
    with progress_bar(description, total=len(requests), completed=stats.hits) as bar:
        commit = _Committer(backend, store, keys) if store is not None else None

        def done(k: int, c: Completion) -> None:
            if commit:
                commit.add(todo[k], c)
            bar.advance(1, tokens=c.completion_tokens)

        try:
            # every backend keeps its own slots busy, so it is handed the whole list of misses
            answers = answer_all(backend, [requests[i] for i in todo], done) if todo else []
        finally:  # a stage stopped by an error or a signal keeps what was already answered
            if commit:
                commit.flush()
    fresh = dict(zip(todo, answers))
    done_ = [r if r is not None else fresh[i] for i, r in enumerate(results)]
    _count(stats, done_)
    if backend.cacheable:
        failed = f", {stats.failed} failed, {stats.rejected} rejected" if stats.failed or stats.rejected else ""
        console.print(f"{description}: call cache {stats.hits} hits, {stats.misses} misses{failed}")
    if check_failures:
        apply_failure_policy(backend, stats, description)
    return done_, stats


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


def apply_failure_policy(backend: Backend, stats: RunStats, description: str) -> None:
    """``CallsFailed`` when more of ``stats``' calls failed than the backend's ``max_failed_fraction`` allows."""
    if stats.failed == 0 or stats.failed <= backend.max_failed_fraction * stats.calls:
        return
    causes = ", ".join(f"{k} ×{v}" for k, v in sorted(stats.failed_by_cause.items()))
    raise CallsFailed(
        f"{description}: {stats.failed} of {stats.calls} calls to {backend.where()} failed after retries ({causes}); "
        f"the {stats.calls - stats.failed - stats.rejected} answered calls are cached, so running the stage again "
        f"sends only the failed ones (max_failed_fraction {backend.max_failed_fraction} allows "
        f"{int(backend.max_failed_fraction * stats.calls)})"
    )


