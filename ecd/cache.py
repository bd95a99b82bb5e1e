"""A content-addressed cache of model calls, kept outside DVC's outputs.

The key is a hash of what determines a call's result — the model's identity, the rendered request,
the sampling parameters with the seed, and the prompt template's version — and of nothing else:
batch size, concurrency or the number of GPUs change no result, so they change no key. Results are
committed batch by batch, so a crash or a killed runner loses only the calls still in flight, and
a changed parameter pays only for the calls it really changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from ecd.errors import EcdError
from ecd.records import canonical_json

DEFAULT_DIR = ".ecd/cache"


def cache_dir() -> Path:
    """``$ECD_CACHE_DIR`` or ``.ecd/cache`` under the working directory (git- and DVC-ignored)."""
    return Path(os.environ.get("ECD_CACHE_DIR", DEFAULT_DIR))


def call_key(model_identity: str, request: dict[str, Any]) -> str:
    """sha256 over the model identity and the canonical JSON of the request (a lone surrogate, which
    UTF-8 cannot hold, is hashed as it is: the backend then names that request as unserialisable)."""
    return hashlib.sha256(canonical_json([model_identity, request]).encode("utf-8", "surrogatepass")).hexdigest()


class CallCache:
    """SQLite in WAL mode: one row per call, written in one transaction per batch.

    A damaged file (a machine that crashed mid-write, a file that is not SQLite) is found when the
    cache opens (``PRAGMA quick_check``): it is moved aside as ``calls.sqlite.damaged-<time>`` with
    one warning, and the run starts on an empty cache, so a damaged answer is never served. A single
    entry that does not parse is dropped and recomputed (``damaged`` counts them)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else cache_dir() / "calls.sqlite"
        if self.path.parent.exists() and not self.path.parent.is_dir():
            raise EcdError(f"the call cache's directory {self.path.parent} is a file (set ECD_CACHE_DIR elsewhere, "
                           "or move the file)")
        if self.path.is_dir():
            raise EcdError(f"the call cache {self.path} is a directory, not a file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.damaged = 0
        problem = inspect_file(self.path)
        if problem is not None:
            aside = quarantine(self.path)
            warn(f"the call cache {self.path} was damaged ({problem}); moved to {aside.name}: its answers will be "
                 "computed again")
        self._db = self._open()
        self._run: int | None = None

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, model TEXT, result TEXT, created REAL)")
        db.execute(
            "CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY AUTOINCREMENT, started REAL, description TEXT,"
            " hits INTEGER DEFAULT 0, misses INTEGER DEFAULT 0, entries INTEGER DEFAULT 0, bytes INTEGER DEFAULT 0)"
        )
        db.commit()
        return db

    def get_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """The stored results of ``keys`` that are there and whole; an entry that does not parse as a
        JSON object is deleted (a miss, computed again) and counted in ``damaged``."""
        found: dict[str, dict[str, Any]] = {}
        bad: list[str] = []
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for key, result in self._db.execute(f"SELECT key, result FROM calls WHERE key IN ({marks})", chunk):
                value = _parse(result)
                if value is None:
                    bad.append(key)
                else:
                    found[key] = value
        if bad:
            self.drop(bad)
        return found

    def drop(self, keys: list[str]) -> None:
        """Delete damaged entries (their calls are computed again) and count them."""
        with self._db:
            self._db.executemany("DELETE FROM calls WHERE key = ?", [(k,) for k in keys])
        self.damaged += len(keys)
        warn(f"{len(keys)} damaged entries of the call cache {self.path} dropped: their calls are computed again")

    def start_run(self, description: str, hits: int, misses: int) -> None:
        """Record one cached execution (a stage's batch of calls) for ``ecd cache stats``."""
        with self._db:
            cur = self._db.execute("INSERT INTO runs (started, description, hits, misses) VALUES (?, ?, ?, ?)",
                                   (time.time(), description, hits, misses))
        self._run = cur.lastrowid

    def put_many(self, model: str, items: dict[str, dict[str, Any]]) -> None:
        now = time.time()
        rows = [(k, model, json.dumps(v, ensure_ascii=False), now) for k, v in items.items()]
        with self._db:  # one transaction: the batch's results and the run's counters
            self._db.executemany("INSERT OR REPLACE INTO calls (key, model, result, created) VALUES (?, ?, ?, ?)", rows)
            if self._run is not None:
                self._db.execute("UPDATE runs SET entries = entries + ?, bytes = bytes + ? WHERE id = ?",
                                 (len(rows), sum(len(r[2]) for r in rows), self._run))

    def summary(self) -> dict[str, dict[str, int]]:
        """``{"last_run": {...}, "total": {...}}``, each with entries, hits, misses and bytes."""
        keys = ("entries", "hits", "misses", "bytes")
        last = self._db.execute("SELECT entries, hits, misses, bytes FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        hits, misses = self._db.execute("SELECT COALESCE(SUM(hits), 0), COALESCE(SUM(misses), 0) FROM runs").fetchone()
        entries, size = self._db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(result)), 0) FROM calls").fetchone()
        return {
            "last_run": dict(zip(keys, last or (0, 0, 0, 0))),
            "total": {"entries": entries, "hits": hits, "misses": misses, "bytes": size},
        }

    def count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]

    def close(self) -> None:
        self._db.close()


def _parse(result: Any) -> dict[str, Any] | None:
    try:
        value = json.loads(result)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def inspect_file(path: Path) -> str | None:
    """What is wrong with a cache file, or None when it is whole (or not there yet)."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        db = sqlite3.connect(path, timeout=60)
        try:
            rows = [r[0] for r in db.execute("PRAGMA quick_check")]
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        if "locked" in str(exc):
            raise
        return str(exc)
    return None if rows == ["ok"] else "; ".join(map(str, rows[:3]))


def _siblings(path: Path) -> list[Path]:
    return [path, *(path.with_name(path.name + suffix) for suffix in ("-wal", "-shm", "-journal"))]


def quarantine(path: Path) -> Path:
    """Move a damaged cache file (and its journal files) aside; returns where it went."""
    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    for p in _siblings(path):
        if p.exists():
            p.replace(aside.with_name(aside.name + p.name[len(path.name):]))
    return aside


def check(path: Path | None = None) -> dict[str, Any]:
    """``ecd cache check``: whether the file is whole, and how many entries do not parse."""
    path = path or cache_dir() / "calls.sqlite"
    if not path.exists():
        return {"path": str(path), "ok": True, "entries": 0, "damaged_entries": 0, "problem": None}
    problem = inspect_file(path)
    if problem is not None:
        return {"path": str(path), "ok": False, "entries": None, "damaged_entries": None, "problem": problem}
    db = sqlite3.connect(path, timeout=60)
    try:
        entries = damaged = 0
        for (result,) in db.execute("SELECT result FROM calls"):
            entries += 1
            damaged += _parse(result) is None
    except sqlite3.DatabaseError as exc:
        return {"path": str(path), "ok": False, "entries": None, "damaged_entries": None, "problem": str(exc)}
    finally:
        db.close()
    return {"path": str(path), "ok": damaged == 0, "entries": entries, "damaged_entries": damaged, "problem": None}


def remove(path: Path | None = None) -> list[Path]:
    """``ecd cache clear``: delete the cache file and its journals, whole or damaged; returns what went."""
    path = path or cache_dir() / "calls.sqlite"
    gone = [p for p in _siblings(path) if p.exists()]
    for p in gone:
        p.unlink()
    return gone
