"""Seed instructions I(0) with reference answers R(0), normalised to instruction records."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ecd.errors import EcdError
from ecd.params import SeedParams
from ecd.records import content_id, iter_jsonl


def _rows(p: SeedParams) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, row) pairs; ``where`` names the file and line for error messages."""
    src = Path(p.source)
    if src.suffix in {".jsonl", ".json"} or src.exists():
        if not src.exists():
            raise EcdError(f"seed file not found: {src} (params seed.source)")
        if src.suffix == ".json":
            try:
                data = json.loads(src.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise EcdError(f"{src}:{exc.lineno}: malformed JSON ({exc.msg})") from None
            if not isinstance(data, list):
                raise EcdError(f"{src}: expected a JSON list of objects")
            for i, row in enumerate(data):
                yield f"{src} item {i}", row
        elif src.is_dir():
            yield from _dataset_rows(p)
        else:
            for lineno, row in iter_jsonl(src):
                yield f"{src}:{lineno}", row
    else:
        yield from _dataset_rows(p)


def _dataset_rows(p: SeedParams) -> Iterator[tuple[str, dict[str, Any]]]:
    import datasets

    try:
        ds = datasets.load_dataset(p.source, p.config, split=p.split)
    except Exception as exc:  # datasets raises many types; all mean "cannot load this source"
        raise EcdError(f"cannot load seed source {p.source!r}: {str(exc).splitlines()[0]}") from None
    for i, row in enumerate(ds):
        yield f"{p.source}[{p.split}] row {i}", row


def _field(row: dict[str, Any], name: str, where: str) -> str:
    if name not in row:
        raise EcdError(f"{where}: missing field {name!r} (params seed)")
    value = row[name]
    if value is None:
        return ""
    if not isinstance(value, str):
        raise EcdError(f"{where}: field {name!r} should be text, got {type(value).__name__}")
    return value


def seed_record(text: str, reference: str, source_id: str, name: str) -> dict[str, Any]:
    rid = content_id("seed", text, reference)
    return {
        "id": rid,
        "root_id": rid,
        "parent_id": None,
        "chain": None,
        "round": 0,
        "text": text,
        "constraints": [],
        "operation": "seed",
        "reference": reference,
        "source": {"id": source_id, "name": name},
        "teacher": None,
    }


def load_seeds(p: SeedParams) -> list[dict[str, Any]]:
    """Read and normalise seeds. Self-Instruct rows (``instances``) use their first instance."""
    out: dict[str, dict[str, Any]] = {}
    for where, row in _rows(p):
        if not isinstance(row, dict):
            raise EcdError(f"{where}: expected an object")
        instruction = _field(row, p.instruction_field, where).strip()
        body = row["instances"][0] if isinstance(row.get("instances"), list) and row["instances"] else row
        extra = _field(body, p.input_field, where).strip() if p.input_field and p.input_field in body else ""
        reference = _field(body, p.output_field, where).strip()
        if not instruction or not reference:
            continue
        text = f"{instruction}\n\n{extra}" if extra else instruction
        source_id = str(row.get(p.id_field, "")) if p.id_field else ""
        name = str(row.get(p.name_field, "")) if p.name_field else ""
        rec = seed_record(text, reference, source_id or where, name)
        out.setdefault(rec["id"], rec)
        if p.limit and len(out) >= p.limit:
            break
    if not out:
        raise EcdError(f"no usable seed instructions in {p.source}")
    return list(out.values())
