"""Seed instructions I(0) with reference answers R(0), normalised to instruction records."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ecd.errors import EcdError
from ecd.params import SeedParams
from ecd.records import content_id, iter_jsonl, read_text
from ecd.schema import Instruction


def _rows(p: SeedParams) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, row) pairs; ``where`` names the file and line for error messages."""
    src = Path(p.source)
    if src.suffix in {".jsonl", ".json"} or src.exists():
        if not src.exists():
            raise EcdError(f"seed file not found: {src} (params seeds.source)")
        if src.suffix == ".json":
            try:
                data = json.loads(read_text(src))
            except json.JSONDecodeError as exc:
                raise EcdError(f"{src}:{exc.lineno}: malformed JSON ({exc.msg})") from None
            except (ValueError, RecursionError) as exc:
                raise EcdError(f"{src}: malformed JSON ({str(exc)[:80]})") from None
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


def with_input(instruction: str, extra: str) -> str:
    """An instruction with its input appended after a blank line, as Self-Instruct's tasks are posed."""
    return f"{instruction}\n\n{extra}" if extra else instruction


def seed_record(text: str, reference: str, source_id: str, name: str) -> Instruction:
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


def read_seeds(p: SeedParams) -> tuple[list[Instruction], Counter[str]]:
    """Read and normalise seeds; returns them and the rows left out by cause (``too_long_instruction``,
    ``too_long_reference``, ``empty``, ``duplicate``). Self-Instruct rows (``instances``) use their first
    instance. Over-long rows are left out before any model sees them, or refused with
    ``seeds.too_long: error``."""
    out: dict[str, Instruction] = {}
    skipped: Counter[str] = Counter()
    for where, row in _rows(p):
        if not isinstance(row, dict):
            raise EcdError(f"{where}: expected an object")
        instruction = _field(row, p.instruction_field, where).strip()
        body = row["instances"][0] if isinstance(row.get("instances"), list) and row["instances"] else row
        if not isinstance(body, dict):
            raise EcdError(f"{where}: expected 'instances' to hold objects")
        extra = _field(body, p.input_field, where).strip() if p.input_field and p.input_field in body else ""
        reference = _field(body, p.output_field, where).strip()
        if not instruction or not reference:
            skipped["empty"] += 1
            continue
        text = with_input(instruction, extra)
        for what, value, limit in (("instruction", text, p.max_instruction_chars),
                                   ("reference", reference, p.max_reference_chars)):
            if len(value) > limit:
                if p.too_long == "error":
                    raise EcdError(f"{where}: {what} of {len(value):,} characters is over seeds.max_{what}_chars={limit:,}")
                skipped[f"too_long_{what}"] += 1
                break
        else:
            source_id = str(row.get(p.id_field, "")) if p.id_field else ""
            name = str(row.get(p.name_field, "")) if p.name_field else ""
            rec = seed_record(text, reference, source_id or where, name)
            if rec["id"] in out:
                skipped["duplicate"] += 1
            out.setdefault(rec["id"], rec)
            if p.limit and len(out) >= p.limit:
                break
    if not out:
        raise EcdError(f"no usable seed instructions in {p.source} (left out: {dict(skipped) or 'none'})")
    return list(out.values()), skipped


def load_seeds(p: SeedParams) -> list[Instruction]:
    """The normalised seeds (see ``read_seeds``)."""
    return read_seeds(p)[0]
