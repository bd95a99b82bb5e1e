"""Pairs less their texts, many at once, held as columns.

The pair stage at 52,500 seeds decides on about two million candidate pairs (each strategy's, before
matching) and a million usable steps. As Python objects with their ids as strings each took about
half a kilobyte, over 2 GB in all; as columns a stub takes about 180 bytes (75 for a strategy that is
only matched, :data:`MATCH_FIELDS`): ids and other strings as fixed-width bytes (numpy ``S``: byte
order is UTF-8 order, which is the strings' order, so sorting the bytes sorts the ids), numbers as
numpy numbers, and fields that take few values (strategy, models, constraint lists) as codes into a
table of those values. A row comes back as a dict of Python values when it is needed (a chunk at a
time, to read its texts back from the round files).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

Kind = Literal["text", "int", "float", "value"]

#: a pair's fields that a stub keeps (all but its texts and kwargs), by how they are held
STUB_FIELDS: dict[str, Kind] = {
    "id": "text", "row_id": "text", "strategy": "value", "root_id": "text", "chain": "text", "round": "int",
    "instruction_id": "text", "chosen_id": "text", "rejected_id": "text", "chosen_model": "value",
    "rejected_model": "value", "n_constraints": "int", "new_constraints": "value", "missed_constraints": "value",
    "rejected_pass_fraction": "float", "model_gap": "float", "difficulty": "float", "instruction_id_list": "value"}

#: what matching reads of a strategy that is matched but not written (``pair.match`` less ``pair.strategy``:
#: ``random`` in the default run), and ``model_gap``'s draw of the instructions others can pair
MATCH_FIELDS: dict[str, Kind] = {name: STUB_FIELDS[name] for name in ("id", "row_id", "round", "chain", "instruction_id")}

#: what ``random`` and ``model_gap`` keep of each usable step (its chosen answer passes)
USABLE_FIELDS: dict[str, Kind] = {"round": "int", "chain": "text", "root_id": "text", "instruction_id": "text",
                                  "chosen_id": "text"}

_DTYPES = {"int": np.int64, "float": np.float64, "value": np.int32}


class Columns:
    """Rows of the fields ``spec`` names, as columns (see the module's docstring). Built from
    mappings a chunk at a time (:meth:`of`), joined (:meth:`concat`), cut (:meth:`take`), read back
    a row at a time (``columns[i]``) or a field at a time (:meth:`values`)."""

    def __init__(self, spec: Mapping[str, Kind], columns: dict[str, npt.NDArray[Any]],
                 tables: dict[str, list[Any]]) -> None:
        self.spec, self.columns, self.tables = dict(spec), columns, tables

    @classmethod
    def of(cls, rows: Sequence[Mapping[str, Any]], spec: Mapping[str, Kind]) -> Columns:
        """The rows' fields as columns (a list field is held as a tuple)."""
        columns: dict[str, npt.NDArray[Any]] = {}
        tables: dict[str, list[Any]] = {}
        for name, kind in spec.items():
            values = [row[name] for row in rows]
            if kind == "text":
                columns[name] = texts(values)
            elif kind == "value":
                codes: dict[Any, int] = {}
                columns[name] = np.array([codes.setdefault(tuple(v) if isinstance(v, list) else v, len(codes))
                                          for v in values], dtype=np.int32)
                tables[name] = list(codes)
            else:
                columns[name] = np.array(values, dtype=_DTYPES[kind])
        return cls(spec, columns, tables)

    @classmethod
    def concat(cls, parts: Iterable[Columns], spec: Mapping[str, Kind]) -> Columns:
        """The parts' rows one part after the other (the value tables merged; one part: itself)."""
        parts = list(parts)
        if len(parts) == 1 and parts[0].spec == dict(spec):
            return parts[0]
        columns: dict[str, npt.NDArray[Any]] = {}
        tables: dict[str, list[Any]] = {}
        for name, kind in spec.items():
            if kind != "value":
                arrays = [p.columns[name] for p in parts]
                columns[name] = np.concatenate(arrays) if arrays else cls.of([], {name: kind}).columns[name]
                continue
            codes: dict[Any, int] = {}
            remapped = []
            for p in parts:
                to = np.array([codes.setdefault(v, len(codes)) for v in p.tables[name]], dtype=np.int32)
                remapped.append(to[p.columns[name]] if len(to) else p.columns[name])
            columns[name] = np.concatenate(remapped) if remapped else np.array([], dtype=np.int32)
            tables[name] = list(codes)
        return cls(spec, columns, tables)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def take(self, index: npt.NDArray[Any]) -> Columns:
        """The rows at ``index``, in its order."""
        return Columns(self.spec, {k: v[index] for k, v in self.columns.items()}, self.tables)

    def values(self, name: str) -> list[Any]:
        """A field of every row, as the Python values the rows were made from (lists as tuples)."""
        column, kind = self.columns[name], self.spec[name]
        if kind == "text":
            return [v.decode() for v in column.tolist()]
        if kind == "value":
            table = self.tables[name]
            return [table[c] for c in column.tolist()]
        return list(column.tolist())

    def sort_key(self, name: str) -> npt.NDArray[Any]:
        """An array that sorts as the field's values do (a coded field by its values' order)."""
        column = self.columns[name]
        if self.spec[name] != "value":
            return column
        table = self.tables[name]
        rank = np.empty(len(table), dtype=np.int32)
        rank[sorted(range(len(table)), key=table.__getitem__)] = np.arange(len(table), dtype=np.int32)
        return rank[column]

    def rows(self, start: int = 0, stop: int | None = None) -> list[dict[str, Any]]:
        """Rows ``start`` to ``stop`` as dicts of Python values."""
        part = self.take(np.arange(start, len(self) if stop is None else min(stop, len(self))))
        fields = {name: part.values(name) for name in self.spec}
        return [dict(zip(fields, row)) for row in zip(*fields.values())]

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.rows(i, i + 1)[0]


def field(rows: Sequence[Mapping[str, Any]] | Columns, name: str) -> list[Any]:
    """A field of every row, whether the rows are pairs (mappings) or :class:`Columns` of stubs."""
    return rows.values(name) if isinstance(rows, Columns) else [row[name] for row in rows]


def texts(values: Iterable[str]) -> npt.NDArray[Any]:
    """Strings as a column of bytes, comparable with a ``text`` column."""
    encoded = [v.encode() for v in values]
    return np.array(encoded, dtype=np.bytes_) if encoded else np.array([], "S1")
