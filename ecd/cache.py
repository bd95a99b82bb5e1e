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
import time
from pathlib import Path
from typing import Any

from ecd.records import canonical_json

DEFAULT_DIR = ".ecd/cache"


def cache_dir() -> Path:
    """``$ECD_CACHE_DIR`` or ``.ecd/cache`` under the working directory (git- and DVC-ignored)."""
    return Path(os.environ.get("ECD_CACHE_DIR", DEFAULT_DIR))


def call_key(model_identity: str, request: dict[str, Any]) -> str:
    """sha256 over the model identity and the canonical JSON of the request."""
    return hashlib.sha256(canonical_json([model_identity, request]).encode("utf-8")).hexdigest()


class CallCache:
    """SQLite in WAL mode: one row per call, written in one transaction per batch."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else cache_dir() / "calls.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, model TEXT, result TEXT, created REAL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY AUTOINCREMENT, started REAL, description TEXT,"
            " hits INTEGER DEFAULT 0, misses INTEGER DEFAULT 0, entries INTEGER DEFAULT 0, bytes INTEGER DEFAULT 0)"
        )
        self._db.commit()
        self._run: int | None = None

    def get_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for key, result in self._db.execute(f"SELECT key, result FROM calls WHERE key IN ({marks})", chunk):
                found[key] = json.loads(result)
        return found

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

    def clear(self) -> None:
        with self._db:
            self._db.execute("DELETE FROM calls")
            self._db.execute("DELETE FROM runs")
        self._db.execute("VACUUM")

    def close(self) -> None:
        self._db.close()
