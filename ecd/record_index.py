"""An index over a JSONL file's records by key, so that a stage reads the records it needs from disk
when it needs them instead of holding the file: the round files (``ecd.rounds``) at any size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ecd.errors import EcdError


class RecordFile:
    """A JSONL file's records by key, read from disk when asked for: one pass builds a sorted index
    of 64-bit key hashes and byte offsets (16 bytes a record), so that a stage holds the records of
    the chunk it works on, not the file. ``key``: the field records are found by (several records may
    share one; a hash that two keys share is told apart by the records themselves)."""

    def __init__(self, path: Path, key: str = "id") -> None:
        import json
        from array import array

        import numpy as np

        from ecd.records import iter_jsonl

        self.path, self.key = path, key
        hashes, offsets = array("Q"), array("q")
        offset = 0
        with path.open("rb") as fh:
            for line, raw in enumerate(fh, 1):
                if raw.strip():
                    try:
                        value = json.loads(raw)[key]
                    except (ValueError, KeyError, TypeError):
                        list(iter_jsonl(path))  # the reader's own error (not UTF-8, not JSON), with the line
                        raise EcdError(f"{path}:{line}: a record without {key!r}") from None
                    hashes.append(_hash64(str(value)))
                    offsets.append(offset)
                offset += len(raw)
        order = np.argsort(np.frombuffer(hashes, dtype=np.uint64), kind="stable")  # stable: file order within a key
        self._hashes = np.frombuffer(hashes, dtype=np.uint64)[order]
        self._offsets = np.frombuffer(offsets, dtype=np.int64)[order]
        self._fh = path.open("rb")

    def __len__(self) -> int:
        """How many distinct keys (by hash) the file holds."""
        return int((self._hashes[1:] != self._hashes[:-1]).sum()) + 1 if len(self._hashes) else 0

    def __contains__(self, key: str) -> bool:
        return bool(self.all(key))

    def __del__(self) -> None:
        if hasattr(self, "_fh"):
            self._fh.close()

    def all(self, key: str) -> list[Any]:
        """Every record with ``key``, in file order (none: an empty list)."""
        import json

        import numpy as np

        h = np.uint64(_hash64(key))
        lo, hi = np.searchsorted(self._hashes, h, "left"), np.searchsorted(self._hashes, h, "right")
        out = []
        for offset in self._offsets[lo:hi].tolist():
            self._fh.seek(offset)
            rec = json.loads(self._fh.readline())
            if str(rec[self.key]) == key:
                out.append(rec)
        return out

    def get(self, key: str) -> Any:
        found = self.all(key)
        return found[0] if found else None


def _hash64(value: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.blake2b(value.encode("utf-8"), digest_size=8).digest(), "little")
