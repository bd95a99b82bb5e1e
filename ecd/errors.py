"""One error type for everything a user can fix, reported as one line without a traceback."""

from __future__ import annotations

import difflib
import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class EcdError(Exception):
    """A problem with the user's input (params, files, servers): the message says what and where."""


def closest(name: str, valid: list[str] | tuple[str, ...], cutoff: float = 0.6) -> str | None:
    """The valid name closest to a misspelled one, or None when none is close."""
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=cutoff)
    return close[0] if close else None


def did_you_mean(name: str, valid: list[str] | tuple[str, ...], cutoff: float = 0.6, prefix: str = "") -> str:
    """`` (did you mean 'x'?)`` for the closest valid name (shown after ``prefix``), or an empty string."""
    close = closest(name, valid, cutoff)
    return f" (did you mean {prefix + close!r}?)" if close else ""


def report_errors(func: F) -> F:
    """Turn an EcdError into ``error: <message>`` on stderr and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except EcdError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]
