"""Half price: the OpenAI Batch API (and the servers that copy it) for hosted teachers.

With ``batch_api: true`` in an ``openai`` model's params, the call cache's misses are not sent one by
one: they are written as a JSONL batch file, uploaded (``POST /files``, purpose ``batch``), submitted
(``POST /batches``, 24 h window), polled with a progress line, and the output file's answers are read
back in request order. The batch's id is stored under ``.ecd/batches/`` before polling starts, keyed
by a hash of the requests, so a killed or restarted stage finds its batch again instead of paying
twice. Requests a batch leaves unanswered (it expired, or was cancelled or failed) go into one more
batch; what that one leaves too becomes failed calls, for the failure policy to judge.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ecd.backends.base import FAILED, REJECTED, Completion, OnDone
from ecd.backends.http_policy import RETRY_STATUSES, unreachable
from ecd.cache import cache_dir
from ecd.errors import EcdError
from ecd.params import ModelParams
from ecd.progress import console
from ecd.records import write_text


#: batch states after which nothing more will be answered
ENDED = {"completed", "expired", "failed", "cancelled"}
#: batches to try before a request that none answered counts as failed
ROUNDS = 2


def state_dir() -> Path:
    return cache_dir().parent / "batches"


def _lines(bodies: dict[str, dict[str, Any]]) -> str:
    """The batch file: one line per distinct request, in custom-id order (the same requests always
    make the same file, wherever they stood in the stage's list)."""
    return "".join(json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
                               "body": bodies[cid]}, sort_keys=True) + "\n" for cid in sorted(bodies))


def _completion(line: dict[str, Any]) -> Completion:
    """One output-file line → a completion (a failed or rejected one where the request failed)."""
    response = line.get("response") or {}
    status = int(response.get("status_code") or 0)
    if line.get("error") or status != 200:
        if status and status < 500 and status not in RETRY_STATUSES:
            return Completion("", REJECTED, error=f"rejected_{status}")
        return Completion("", FAILED, error=f"http_{status}" if status else "batch_error")
    try:
        body = response["body"]
        choice = body["choices"][0]
        usage = body.get("usage") or {}
        return Completion(text=choice["message"].get("content") or "", finish_reason=choice.get("finish_reason") or "stop",
                          prompt_tokens=usage.get("prompt_tokens", 0) or 0,
                          completion_tokens=usage.get("completion_tokens", 0) or 0)
    except (KeyError, IndexError, TypeError, AttributeError):
        return Completion("", FAILED, error="malformed_reply")


async def generate(params: ModelParams, api_key: str, identity: str, bodies: list[dict[str, Any]],
                   on_done: OnDone) -> None:
    """Answer the requests whose chat bodies are ``bodies`` through batches; ``on_done`` as each
    batch's answers are read back (``identity``: the model's, part of the key a batch is found by)."""
    from openai import AsyncOpenAI

    p = params
    client = AsyncOpenAI(base_url=p.base_url, api_key=api_key, max_retries=p.max_retries, timeout=p.timeout)
    results: list[Completion | None] = [None] * len(bodies)
    # a request's custom id is its body's hash: equal requests (same messages, seed, sampling) are asked once
    ids = [hashlib.sha256(json.dumps(b, sort_keys=True).encode()).hexdigest()[:24] for b in bodies]
    todo = list(range(len(bodies)))
    try:
        for round_ in range(ROUNDS):
            if not todo:
                break
            lines = _lines({ids[i]: bodies[i] for i in todo})
            answers = await _one_batch(client, p, identity, lines, lines.count("\n"), round_)
            last = round_ + 1 == ROUNDS
            for i in todo:
                answer = answers.get(ids[i])
                # a request the server failed (5xx) gets another batch; one it rejected does not
                if answer is not None and (answer.finish_reason != FAILED or last):
                    results[i] = answer
                    on_done(i, answer)
            todo = [i for i in todo if results[i] is None]
            if todo:
                console.print(f"batch: {len(todo)} requests left unanswered"
                              + ("; sending them in a new batch" if round_ + 1 < ROUNDS else ""))
    finally:
        await client.close()
    for i in todo:
        on_done(i, Completion("", FAILED, error="batch_unanswered"))


async def _one_batch(client: Any, p: ModelParams, identity: str, lines: str, n: int, round_: int) -> dict[str, Completion]:
    """Submit (or find again) one batch of ``lines``, wait for it to end, return its answers by custom id."""
    import asyncio

    import openai

    key = hashlib.sha256(f"{identity}\n{p.base_url}\n{lines}".encode()).hexdigest()[:24]
    state = state_dir() / f"{key}.json"
    batch = None
    try:
        if state.exists():
            batch_id = json.loads(state.read_text())["batch_id"]
            try:
                batch = await client.batches.retrieve(batch_id)
                console.print(f"batch: found batch {batch_id} from an earlier run ({batch.status})")
            except openai.NotFoundError:  # gone from the server: submit again
                batch = None
        if batch is None:
            upload = await client.files.create(file=(f"ecd-{key}.jsonl", lines.encode()), purpose="batch")
            batch = await client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                                completion_window="24h")
            state.parent.mkdir(parents=True, exist_ok=True)
            write_text(state, json.dumps({"batch_id": batch.id, "requests": n, "round": round_}))
            console.print(f"batch: submitted {batch.id} with {n} requests")
        last = ""
        while batch.status not in ENDED:
            counts = batch.request_counts
            line = f"batch {batch.id}: {batch.status}, {counts.completed if counts else 0}/{n} done"
            if line != last:
                console.print(line)
                last = line
            await asyncio.sleep(p.batch_poll_seconds)
            batch = await client.batches.retrieve(batch.id)
        answers: dict[str, Completion] = {}
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            content = await client.files.content(file_id)
            for k, raw in enumerate(content.text.splitlines(), 1):
                if not raw.strip():
                    continue
                try:
                    row = json.loads(raw)
                    answers[str(row["custom_id"])] = _completion(row)
                except (ValueError, KeyError, TypeError):
                    raise EcdError(f"batch {batch.id}: file {file_id} line {k} is not a batch result") from None
        failed = sum(a.finish_reason == FAILED for a in answers.values())
        console.print(f"batch {batch.id}: {batch.status}, {len(answers) - failed} of {n} answered"
                      + (f", {failed} failed" if failed else ""))
    except openai.APIConnectionError as exc:
        raise unreachable(p, exc) from None
    except openai.APIStatusError as exc:
        raise EcdError(f"{p.base_url}: the batch endpoints answered {exc.status_code}: {exc.message}") from None
    # the state file stays: should these requests be asked again (say, a cache cleared), the rerun reads
    # this batch's answers back instead of paying for them twice
    return answers
