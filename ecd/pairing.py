"""Contrast: turn accepted evolution steps into preference pairs, split by root instruction.

An ``ecd`` pair is (I(t), chosen R(t), rejected R(t-1)). R(t-1) was written for I(t-1), so it meets
most of I(t)'s requirements and misses the new one: a hard negative. A pair is kept only when that
holds as checked — the chosen response passes every constraint, the rejected one misses at least
``min_missed`` of them and still passes at least ``min_rejected_pass_fraction`` of them.

Pairs are stored in TRL's conversational preference format with metadata columns, including
``instruction_id_list`` and ``kwargs`` in IFEval's own schema.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

from ecd.params import PairParams
from ecd.records import atomic_path, content_id, write_text

#: every kwarg of IFEval's schema with its type, then ecd's own types' kwargs; a pair's kwargs fill
#: the ones its constraints use and leave the others null, as the Hugging Face copy of IFEval does
KWARGS_SCHEMA: dict[str, str] = {
    "num_highlights": "int64", "relation": "string", "num_words": "int64", "num_placeholders": "int64",
    "prompt_to_repeat": "string", "num_paragraphs": "int64", "num_sentences": "int64", "keywords": "list",
    "nth_paragraph": "int64", "first_word": "string", "language": "string", "let_frequency": "int64",
    "let_relation": "string", "letter": "string", "end_phrase": "string", "postscript_marker": "string",
    "num_bullets": "int64", "forbidden_words": "list", "section_spliter": "string", "num_sections": "int64",
    "capital_relation": "string", "capital_frequency": "int64", "keyword": "string", "frequency": "int64",
    # ecd's code-checkable types
    "num_steps": "int64", "num_rows": "int64", "num_headings": "int64", "sections": "list", "max_words": "int64",
    "word": "string", "num_bold": "int64", "max_chars": "int64",
    # judge-checked types
    "tone": "string", "audience": "string", "persona": "string",
}


def features() -> Any:
    """The explicit schema of a pair table (explicit so that every run writes the same Parquet schema)."""
    from datasets import Features, List, Value

    msg = List({"role": Value("string"), "content": Value("string")})
    kw = {k: (List(Value("string")) if t == "list" else Value(t)) for k, t in KWARGS_SCHEMA.items()}
    return Features(
        {
            "id": Value("string"),
            "prompt": msg,
            "chosen": msg,
            "rejected": msg,
            "strategy": Value("string"),
            "root_id": Value("string"),
            "chain": Value("string"),
            "round": Value("int64"),
            "instruction_id": Value("string"),
            "chosen_id": Value("string"),
            "rejected_id": Value("string"),
            "n_constraints": Value("int64"),
            "new_constraints": List(Value("string")),
            "missed_constraints": List(Value("string")),
            "rejected_pass_fraction": Value("float64"),
            "difficulty": Value("float64"),
            "instruction_id_list": List(Value("string")),
            "kwargs": List(kw),
        }
    )


def ifeval_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """One constraint's kwargs in the pair table's schema (a key outside it would be lost: an error)."""
    unknown = set(kwargs) - set(KWARGS_SCHEMA)
    if unknown:
        raise KeyError(f"kwargs {sorted(unknown)} are not in the pair schema (ecd.pairing.KWARGS_SCHEMA)")
    return {k: kwargs.get(k) for k in KWARGS_SCHEMA}


def ecd_pair(step: dict[str, Any], params: PairParams) -> tuple[dict[str, Any] | None, str | None]:
    """A pair from one accepted step, or the reason it is not one."""
    if not all(r["passed"] for r in step["chosen_results"]):
        return None, "chosen_fails"
    rej = step["rejected_results"]
    missed = [r["id"] for r in rej if not r["passed"]]
    if len(missed) < params.min_missed:
        return None, "rejected_passes"
    if not set(missed) & set(step["new_constraints"]):
        return None, "rejected_misses_only_old_constraints"
    frac = sum(r["passed"] for r in rej) / len(rej)
    if frac < params.min_rejected_pass_fraction:
        return None, "rejected_misses_too_much"
    inst = step["instruction"]
    prompt = [{"role": "user", "content": inst["text"]}]
    chosen = [{"role": "assistant", "content": step["chosen"]["text"]}]
    rejected = [{"role": "assistant", "content": step["rejected"]["text"]}]
    cons = inst["constraints"]
    return (
        {
            "id": content_id("ecd", prompt, chosen, rejected),
            "prompt": prompt,
            "chosen": chosen,
            "rejected": rejected,
            "strategy": "ecd",
            "root_id": step["root_id"],
            "chain": step["chain"],
            "round": step["round"],
            "instruction_id": inst["id"],
            "chosen_id": step["chosen"]["id"],
            "rejected_id": step["rejected"]["id"],
            "n_constraints": len(cons),
            "new_constraints": step["new_constraints"],
            "missed_constraints": missed,
            "rejected_pass_fraction": frac,
            "difficulty": float(step["round"]),
            "instruction_id_list": [c["id"] for c in cons],
            "kwargs": [ifeval_kwargs(c["kwargs"]) for c in cons],
        },
        None,
    )


def split_roots(root_ids: list[str], test_fraction: float, seed: int) -> set[str]:
    """The roots held out for testing: a seeded shuffle of the sorted ids, so no seed is on both sides."""
    roots = sorted(set(root_ids))
    random.Random(seed).shuffle(roots)
    return set(roots[: round(len(roots) * test_fraction)])


def build_pairs(steps: list[dict[str, Any]], params: PairParams) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """Returns (train pairs, test pairs, metrics). Pairs are deduplicated and sorted by id."""
    pairs: dict[str, dict[str, Any]] = {}
    dropped: Counter[str] = Counter()
    for step in steps:
        pair, cause = ecd_pair(step, params)
        if pair is None:
            dropped[cause] += 1
        elif pair["id"] in pairs:
            dropped["duplicate"] += 1
        else:
            pairs[pair["id"]] = pair
    test_roots = split_roots([p["root_id"] for p in pairs.values()], params.test_fraction, params.seed)
    ordered = sorted(pairs.values(), key=lambda p: p["id"])
    train = [p for p in ordered if p["root_id"] not in test_roots]
    test = [p for p in ordered if p["root_id"] in test_roots]
    metrics = {
        "steps": len(steps),
        "pairs": len(pairs),
        "train_pairs": len(train),
        "test_pairs": len(test),
        "train_roots": len({p["root_id"] for p in train}),
        "test_roots": len({p["root_id"] for p in test}),
        "dropped_by_cause": dict(sorted(dropped.items())),
        "pairs_by_round": dict(sorted(Counter(str(p["round"]) for p in ordered).items())),
        "pairs_by_new_constraint": dict(sorted(Counter(c for p in ordered for c in p["new_constraints"]).items())),
    }
    return train, test, metrics


def dataset_card(metrics: dict[str, Any], teacher: str, params_hash: str) -> str:
    rows = "\n".join(f"| {k} | {v} |" for k, v in metrics["pairs_by_new_constraint"].items())
    rounds = "\n".join(f"| {k} | {v} |" for k, v in metrics["pairs_by_round"].items())
    return f"""---
license: apache-2.0
task_categories: [text-generation]
tags: [dpo, preference, instruction-following, ecd]
configs:
  - config_name: default
    data_files:
      - split: train
        path: train.parquet
      - split: test
        path: test.parquet
---
# ECD preference pairs

Built by [ecd](https://github.com/) with Evolutionary Contrastive Distillation: each pair is an
evolved instruction I(t), the teacher's verified answer R(t) (chosen) and the answer R(t-1) to the
previous, easier instruction (rejected) — a hard negative that misses a requirement I(t) added.

- Teacher: `{teacher}`
- Params hash: `{params_hash}`
- Pairs: {metrics['pairs']} ({metrics['train_pairs']} train, {metrics['test_pairs']} test; split by seed
  instruction: {metrics['train_roots']} train roots, {metrics['test_roots']} test roots)
- Seeds: the 175 Self-Instruct seed tasks (Wang et al. 2022), Apache-2.0.

Format: TRL's conversational preference format (`prompt`, `chosen`, `rejected` as chat messages),
plus `instruction_id_list` and `kwargs` in IFEval's schema for the constraints of each prompt.

## Pairs per round

| round | pairs |
|---|---|
{rounds}

## Pairs per added constraint type

| constraint | pairs |
|---|---|
{rows}
"""


def save_pairs(out_dir: str | Path, train: list[dict], test: list[dict], card: str) -> None:
    """Write ``train.parquet``, ``test.parquet`` and ``README.md`` into ``out_dir`` atomically."""
    from datasets import Dataset

    feats = features()
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for name, rows in (("train", train), ("test", test)):
            columns = {k: [r[k] for r in rows] for k in feats}  # from_dict, unlike from_list, takes zero rows
            Dataset.from_dict(columns, features=feats).to_parquet(str(tmp / f"{name}.parquet"))
        write_text(tmp / "README.md", card)


def load_pairs(pairs_dir: str | Path, split: str) -> Any:
    """One split as an in-memory ``datasets.Dataset`` (no copy into the HF cache)."""
    import pyarrow.parquet as pq
    from datasets import Dataset

    from ecd.errors import EcdError

    path = Path(pairs_dir) / f"{split}.parquet"
    if not path.exists():
        raise EcdError(f"pairs not found: {path} (run the pair stage)")
    return Dataset(pq.read_table(path))
