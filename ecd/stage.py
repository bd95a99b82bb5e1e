"""What every stage entry point shares: quiet libraries, one-line errors, timings kept out of outputs."""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ecd import layout
from ecd.errors import EcdError, report_errors
from ecd.progress import console


def record_time(label: str, seconds: float) -> None:
    """Append a timing to ``.ecd/timings.jsonl``: wall-clock seconds differ run to run, so they stay
    out of DVC's outputs (the same run then gives the same ``dvc.lock``). ``ecd timings`` lists them."""
    path = layout.timings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"label": label, "seconds": round(seconds, 1), "at": round(time.time())}) + "\n")


@contextmanager
def timed(label: str) -> Iterator[None]:
    """Time a block: printed as ``<label>: N s`` and recorded with ``record_time``."""
    start = time.perf_counter()
    yield
    seconds = time.perf_counter() - start
    console.print(f"{label}: {seconds:.1f} s")
    record_time(label, seconds)


def stage(func: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a stage's ``main``: user errors exit 2 with one line; the stage's time is printed and recorded."""

    @functools.wraps(func)
    @report_errors
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # our own bars show the long steps
        name = os.path.splitext(os.path.basename(sys.argv[0]))[0]
        label = " ".join([name, *sys.argv[1:]])
        start = time.perf_counter()
        result = func(*args, **kwargs)
        seconds = time.perf_counter() - start
        console.print(f"[green]✓[/green] {label} done in {seconds:.1f} s")
        record_time(label, seconds)
        return result

    return wrapper


def round_arg(params: Any, argv: list[str] | None = None, evolving: bool = False) -> str:
    """The round named on the command line, checked against params (r0, the seeds, is never evolved)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise EcdError("usage: python stages/<stage>.py ROUND (r0, r1, ...)")
    name = argv[0]
    if evolving and name == "r0":
        raise EcdError("round r0 holds the seeds; evolution starts at r1")
    if name not in params.round_names:
        raise EcdError(f"round {name!r} is not in params.yaml rounds ({', '.join(params.round_names)})")
    return name


def write_outputs(records: dict[Any, list[Any]], metrics_path: Any, metrics: dict[str, Any], line: str) -> None:
    """A stage's tail: every record file (compact JSON lines: the round files grow with the seeds),
    then its metrics, then its one-line summary. Each file is written atomically; a stage that
    failed before this point has written nothing."""
    from ecd.records import write_json, write_jsonl

    for path, rows in records.items():
        write_jsonl(path, rows, compact=True)
    write_json(metrics_path, metrics)
    print(line)


def add_counts(total: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    """``total`` with ``part``'s counts added, key by key (numbers add, dicts of counts add key by
    key): a stage that works in chunks adds its chunks' counts into one metrics file."""
    for key, value in part.items():
        if isinstance(value, dict):
            total[key] = add_counts(dict(total.get(key) or {}), value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value
        else:
            total[key] = value
    return total
