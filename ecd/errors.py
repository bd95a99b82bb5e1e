"""One error type for everything a user can fix, and one line without a traceback for every error."""

from __future__ import annotations

import difflib
import errno
import functools
import os
import signal
import sys
import threading
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


class Interrupted(BaseException):
    """SIGTERM as an exception (SIGINT is ``KeyboardInterrupt``): it unwinds through every ``finally``,
    so a stage commits the answers it already received before it exits. A ``BaseException``, like
    ``KeyboardInterrupt``, so that no ``except Exception`` swallows it."""


def _terminate(signum: int, frame: Any) -> None:
    raise Interrupted(signal.Signals(signum).name)


def catch_signals() -> None:
    """Make SIGTERM (what schedulers, ``timeout`` and CI send) unwind like Ctrl-C does."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)


#: the environment variable that shows the traceback of an unexpected error
DEBUG_ENV = "ECD_DEBUG"


def describe(exc: BaseException) -> tuple[str, int]:
    """The one line and the exit status for an error that reached the top of a stage or command.

    ecd's own errors already say what and where; the rest are named by what a user can do about
    them (a full disk, a damaged cache file, a path in the way, unreadable weights), and anything
    else as an unexpected error with the switch that shows its traceback."""
    import sqlite3

    if isinstance(exc, EcdError):
        return f"error: {exc}", 2
    if isinstance(exc, (KeyboardInterrupt, Interrupted)):
        name = "SIGINT" if isinstance(exc, KeyboardInterrupt) else str(exc) or "SIGTERM"
        return (f"interrupted ({name}): the answers already received are in the call cache; "
                "run the stage again to send only the rest"), 130 if name == "SIGINT" else 143
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" writing {exc.filename}" if exc.filename else ""
        return (f"error: no space left on the device{where}: free some space and run again "
                "(the answers already received are in the call cache)"), 2
    if isinstance(exc, sqlite3.DatabaseError):
        text = str(exc)
        if "full" in text:
            return ("error: no space left on the device for the call cache "
                    f"({text}): free some space and run again"), 2
        if "locked" in text or "busy" in text:
            return (f"error: the call cache is busy ({text}): another process holds it past the 60 s wait; "
                    "run again when it is done"), 2
        return (f"error: the call cache is damaged ({text}): `ecd cache check` names the damage, "
                "`ecd cache clear` starts it afresh"), 2
    if isinstance(exc, OSError) and exc.filename is not None:
        what = {errno.EEXIST: "a file is in the way of a directory", errno.ENOTDIR: "a file is in the way of a directory",
                errno.EISDIR: "a directory is in the way of a file", errno.EACCES: "permission denied",
                errno.EROFS: "the file system is read-only"}.get(exc.errno or 0, exc.strerror or "cannot use it")
        return f"error: {exc.filename}: {what}", 2
    if type(exc).__name__ == "SafetensorError":
        return (f"error: model weights that cannot be read ({exc}): the file is truncated or damaged; "
                "make it again (dvc repro -f the stage that writes it)"), 2
    return (f"error: unexpected {type(exc).__name__}: {exc} (a bug in ecd, or an input it does not check yet; "
            f"{DEBUG_ENV}=1 shows the traceback)"), 1


def report_errors(func: F) -> F:
    """Turn any error into one line on stderr (``describe``) and a non-zero exit status, with no
    traceback unless ``ECD_DEBUG=1``; SIGTERM is caught as SIGINT is, so ``finally`` blocks run."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        catch_signals()
        try:
            return func(*args, **kwargs)
        except SystemExit:
            raise
        except BaseException as exc:
            if type(exc).__module__.startswith(("click", "typer")):  # Exit and Abort: the CLI's own control flow
                raise
            if os.environ.get(DEBUG_ENV) and not isinstance(exc, EcdError):
                raise
            line, status = describe(exc)
            print(line, file=sys.stderr)
            sys.exit(status)

    return wrapper  # type: ignore[return-value]
