"""What every stage entry point shares: quiet libraries, one-line errors, a timing line."""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from ecd.errors import report_errors
from ecd.progress import console


def stage(func: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a stage's ``main``: user errors exit 2 with one line; the stage's time is printed."""

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
        console.print(f"[green]✓[/green] {label} done in {time.perf_counter() - start:.1f} s")
        return result

    return wrapper


def round_arg(params: Any, argv: list[str] | None = None, evolving: bool = False) -> str:
    """The round named on the command line, checked against params (r0, the seeds, is never evolved)."""
    from ecd.errors import EcdError

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise EcdError("usage: python stages/<stage>.py ROUND (r0, r1, ...)")
    name = argv[0]
    if evolving and name == "r0":
        raise EcdError("round r0 holds the seeds; evolution starts at r1")
    if name not in params.round_names:
        raise EcdError(f"round {name!r} is not in params.yaml rounds ({', '.join(params.round_names)})")
    return name
