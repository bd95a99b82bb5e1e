"""Records on disk: content-addressed ids, JSONL shards, atomic writes.

Every record's ``id`` is a hash of its defining content, so the same inputs give the same ids and
the same bytes, and a diff between two runs shows what really changed. Every output is written to
a temporary name beside its target and renamed into place, so a crash never leaves half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

from ecd.errors import EcdError


def canonical_json(obj: Any) -> str:
    """The one serialisation used for hashing: sorted keys, no whitespace, UTF-8 kept."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def content_id(*parts: Any, length: int = 16) -> str:
    """A stable id for a record: the first ``length`` hex digits of sha256 over its content."""
    return hashlib.sha256(canonical_json(parts).encode("utf-8")).hexdigest()[:length]


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSONL file; a malformed line is an error that names the file and the line."""
    return [rec for _, rec in iter_jsonl(path)]


R = TypeVar("R")


def read_records(path: str | Path, record: type[R]) -> list[R]:
    """``read_jsonl`` at a stage boundary: the lines as the record declared in ``ecd.schema`` that
    the stage writing the file wrote (``read_records(path, Step)``), so the type checker follows them."""
    return cast("list[R]", read_jsonl(path))


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for each non-blank line of a JSONL file.

    Lines are decoded one at a time, so bytes that are not UTF-8 are reported with their line.
    """
    from ecd.layout import missing_input

    path = Path(path)
    if not path.exists():
        raise missing_input(path)
    if path.is_dir():
        raise EcdError(f"{path}: is a directory, expected a JSONL file")
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise EcdError(f"{path}:{lineno}: not UTF-8 text (byte {exc.start + 1} of the line)") from None
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EcdError(f"{path}:{lineno}: malformed JSON ({exc.msg} at column {exc.colno})") from None
            except (ValueError, RecursionError) as exc:  # e.g. an integer of more digits than Python parses
                raise EcdError(f"{path}:{lineno}: malformed JSON ({str(exc)[:80]})") from None
            if not isinstance(rec, dict):
                raise EcdError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
            yield lineno, rec


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds.

    Works for files and directories alike (a directory target is replaced whole).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent)) / path.name
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


@contextmanager
def jsonl_writer(path: str | Path, compact: bool = True) -> Iterator[Callable[[Mapping[str, Any]], None]]:
    """Yield ``write(record)`` that appends one line (keys sorted) to a temporary file, renamed into
    place only if the block succeeds: a stage that writes as it goes still never leaves half a file."""
    separators = (",", ":") if compact else (", ", ": ")
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        def write(rec: Mapping[str, Any]) -> None:
            fh.write(json.dumps(rec, ensure_ascii=False, sort_keys=True, separators=separators) + "\n")

        yield write


def write_jsonl(path: str | Path, records: Iterable[Mapping[str, Any]], sort_keys: bool = True,
                compact: bool = False) -> int:
    """Write records atomically, one JSON object a line (keys sorted unless a format fixes their
    order; ``compact``: no space after separators, for files written at scale); returns the count."""
    n = 0
    separators = (",", ":") if compact else (", ", ": ")
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False, sort_keys=sort_keys, separators=separators) + "\n")
            n += 1
    return n


def write_json(path: str | Path, obj: Any) -> None:
    """Write a JSON document (metrics, summaries) atomically, pretty and with sorted keys."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def read_text(path: str | Path) -> str:
    """A UTF-8 text file; a missing file or bytes that are not UTF-8 are errors naming the file and line."""
    from ecd.layout import missing_input

    path = Path(path)
    if not path.is_file():
        raise missing_input(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise EcdError(f"{path}:{line}: not UTF-8 text") from None


def seed_from(*parts: Any) -> int:
    """A per-request random seed derived from its content, so it does not depend on batching or order."""
    return int(content_id(*parts), 16) % (2**31)


def save_model(model: Any, tokenizer: Any, out_dir: str | Path, files: dict[str, str] | None = None) -> None:
    """``save_pretrained`` of a model and its tokenizer (and text ``files``, such as a model card) into
    ``out_dir``, atomically (whole or not at all)."""
    with atomic_path(out_dir) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        for name, text in (files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
