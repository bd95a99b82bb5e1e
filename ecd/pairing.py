"""Contrast: turn accepted evolution steps into preference pairs, split by root instruction.

An ``ecd`` pair is (I(t), chosen R(t), rejected R(t-1)). R(t-1) was written for I(t-1), so it meets
most of I(t)'s requirements and misses the new one: a hard negative. A pair is kept only when that
holds as checked — the chosen response passes every constraint, the rejected one misses at least
``min_missed`` of them and still passes at least ``min_rejected_pass_fraction`` of them.
``model_gap`` pairs put a strong model's verified answer over a weak model's answer to the same
instruction; ``random`` pairs put it over another seed's answer (the baseline). Strategies combine.

Pairs are stored in TRL's conversational preference format with metadata columns, including
``instruction_id_list`` and ``kwargs`` in IFEval's own schema.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
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
            "chosen_model": Value("string"),
            "rejected_model": Value("string"),
            "n_constraints": Value("int64"),
            "new_constraints": List(Value("string")),
            "missed_constraints": List(Value("string")),
            "rejected_pass_fraction": Value("float64"),
            "model_gap": Value("float64"),
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


def _pass_fraction(results: list[dict[str, Any]]) -> float:
    return sum(r["passed"] for r in results) / len(results) if results else 1.0


def make_pair(strategy: str, step: dict[str, Any], rejected: dict[str, Any],
              rejected_results: list[dict[str, Any]], curriculum: str) -> dict[str, Any]:
    """A pair row: the step's instruction and chosen R(t) against ``rejected``, with its metadata."""
    inst = step["instruction"]
    prompt = [{"role": "user", "content": inst["text"]}]
    chosen = [{"role": "assistant", "content": step["chosen"]["text"]}]
    rej = [{"role": "assistant", "content": rejected["text"]}]
    cons = inst["constraints"]
    missed = [r["id"] for r in rejected_results if not r["passed"]]
    frac = _pass_fraction(rejected_results)
    gap = _pass_fraction(step["chosen_results"]) - frac
    difficulty = {"none": float(step["round"]), "round": float(step["round"]), "missed": frac, "gap": 1.0 - gap}
    return {
        "id": content_id(prompt, chosen, rej),
        "prompt": prompt,
        "chosen": chosen,
        "rejected": rej,
        "strategy": strategy,
        "root_id": step["root_id"],
        "chain": step["chain"],
        "round": step["round"],
        "instruction_id": inst["id"],
        "chosen_id": step["chosen"]["id"],
        "rejected_id": rejected["id"],
        "chosen_model": step["chosen"]["model"],
        "rejected_model": rejected["model"],
        "n_constraints": len(cons),
        "new_constraints": step["new_constraints"],
        "missed_constraints": missed,
        "rejected_pass_fraction": frac,
        "model_gap": gap,
        "difficulty": difficulty[curriculum],
        "instruction_id_list": [c["id"] for c in cons],
        "kwargs": [ifeval_kwargs(c["kwargs"]) for c in cons],
    }


def ecd_pair(step: dict[str, Any], params: PairParams) -> tuple[dict[str, Any] | None, str | None]:
    """The hard-negative pair (I(t), R(t), R(t-1)) of one accepted step, or the reason it is not one."""
    if not all(r["passed"] for r in step["chosen_results"]):
        return None, "chosen_fails"
    rej = step["rejected_results"]
    missed = [r["id"] for r in rej if not r["passed"]]
    if len(missed) < params.min_missed:
        return None, "rejected_passes"
    if not set(missed) & set(step["new_constraints"]):
        return None, "rejected_misses_only_old_constraints"
    if _pass_fraction(rej) < params.min_rejected_pass_fraction:
        return None, "rejected_misses_too_much"
    return make_pair("ecd", step, step["rejected"], rej, params.curriculum), None


def random_pairs(steps: list[dict[str, Any]], params: PairParams,
                 check: Callable[[str, list[dict[str, Any]]], list[dict[str, Any]]]) -> tuple[list[dict], Counter]:
    """The baseline: each step's chosen R(t) against the chosen answer of a step from another seed,
    drawn with ``pair.seed``; kept when it misses at least ``min_missed`` of I(t)'s constraints."""
    dropped: Counter[str] = Counter()
    usable = [s for s in sorted(steps, key=lambda s: (s["root_id"], s["chain"], s["round"]))
              if all(r["passed"] for r in s["chosen_results"])]
    dropped["chosen_fails"] += len(steps) - len(usable)
    rng = random.Random(content_id("random", params.seed))
    out = []
    for step in usable:
        others = [o for o in (rng.choice(usable) for _ in range(8)) if o["root_id"] != step["root_id"]]
        if not others:
            dropped["no_other_seed"] += 1
            continue
        other = others[0]["chosen"]
        results = check(other["text"], step["instruction"]["constraints"])
        if sum(not r["passed"] for r in results) < params.min_missed:
            dropped["rejected_passes"] += 1
            continue
        out.append(make_pair("random", step, other, results, params.curriculum))
    return out, dropped


def model_gap_pairs(steps: list[dict[str, Any]], weak: dict[str, dict[str, Any]], params: PairParams,
                    check: Callable[[str, list[dict[str, Any]]], list[dict[str, Any]]]) -> tuple[list[dict], Counter]:
    """Automatic pair construction: the strong model's verified answer to I(t) (the step's chosen)
    over the weak model's answer to the same instruction (``weak``: response records by
    instruction id). Kept when the weak answer is a real answer that differs from the strong one
    and, where I(t) has constraints, misses at least ``min_missed`` of them."""
    dropped: Counter[str] = Counter()
    out = []
    seen: set[str] = set()
    for step in steps:
        inst = step["instruction"]
        if inst["id"] in seen:
            continue
        seen.add(inst["id"])
        if not all(r["passed"] for r in step["chosen_results"]):
            dropped["chosen_fails"] += 1
            continue
        w = weak.get(inst["id"])
        if w is None or not w["text"].strip():
            dropped["weak_empty"] += 1
            continue
        if " ".join(w["text"].split()) == " ".join(step["chosen"]["text"].split()):
            dropped["no_gap"] += 1
            continue
        results = check(w["text"], inst["constraints"])
        if inst["constraints"] and sum(not r["passed"] for r in results) < params.min_missed:
            dropped["weak_passes"] += 1
            continue
        out.append(make_pair("model_gap", step, w, results, params.curriculum))
    return out, dropped


def split_roots(root_ids: list[str], test_fraction: float, seed: int) -> set[str]:
    """The roots held out for testing: a seeded shuffle of the sorted ids, so no seed is on both sides."""
    roots = sorted(set(root_ids))
    random.Random(seed).shuffle(roots)
    return set(roots[: round(len(roots) * test_fraction)])


def held_out_roots(r0_state: list[dict[str, Any]], params: PairParams) -> set[str]:
    """The seeds held out for testing, drawn from every seed with a usable answer (round 0's state),
    so that the student's tokenizer, SFT and every pair strategy hold out the same seeds."""
    return split_roots([s["root_id"] for s in r0_state], params.test_fraction, params.seed)


def verified_answers(r0_state: list[dict[str, Any]], steps: list[dict[str, Any]], held_out: set[str]
                     ) -> list[dict[str, Any]]:
    """SFT rows: every training seed's answer and every verified answer R(t) of its chains, each
    (instruction, answer) once, sorted by id so that the rows do not depend on file order."""
    rows: dict[str, dict[str, Any]] = {}
    for inst, resp in [(s["instruction"], s["response"]) for s in r0_state] + [(s["instruction"], s["chosen"]) for s in steps]:
        if inst["root_id"] in held_out:
            continue
        prompt = [{"role": "user", "content": inst["text"]}]
        chosen = [{"role": "assistant", "content": resp["text"]}]
        rows.setdefault(content_id(prompt, chosen), {"prompt": prompt, "chosen": chosen})
    return [rows[k] for k in sorted(rows)]


def order(pairs: list[dict[str, Any]], curriculum: str) -> list[dict[str, Any]]:
    """Pairs by id, or easy to hard by their ``difficulty`` (ties by id) when a curriculum is on."""
    if curriculum == "none":
        return sorted(pairs, key=lambda p: p["id"])
    return sorted(pairs, key=lambda p: (p["difficulty"], p["id"]))


def build_pairs(
    steps: list[dict[str, Any]],
    params: PairParams,
    check: Callable[[str, list[dict[str, Any]]], list[dict[str, Any]]] | None = None,
    weak: dict[str, dict[str, Any]] | None = None,
    roots: list[str] | None = None,
) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """Returns (train pairs, test pairs, metrics) from the strategies in ``pair.strategy``.

    ``check(text, constraints)`` verifies a response that was not verified before (random and weak
    answers); ``weak`` holds the weak model's answers for ``model_gap``. Pairs are deduplicated
    (the first strategy in the list wins) and split by root instruction: ``roots`` is the set the
    split is drawn from (all seeds with an answer, so that every strategy holds out the same seeds).
    """
    from ecd.verification import check_all

    check = check or check_all
    pairs: dict[str, dict[str, Any]] = {}
    dropped: dict[str, Counter[str]] = {}
    for strategy in params.strategy:
        if strategy == "ecd":
            made, causes = [], Counter()
            for step in steps:
                pair, cause = ecd_pair(step, params)
                if pair is None:
                    causes[cause] += 1
                else:
                    made.append(pair)
        elif strategy == "random":
            made, causes = random_pairs(steps, params, check)
        else:
            made, causes = model_gap_pairs(steps, weak or {}, params, check)
        for pair in made:
            if pair["id"] in pairs:
                causes["duplicate"] += 1
            else:
                pairs[pair["id"]] = pair
        dropped[strategy] = causes
    test_roots = split_roots(roots or [p["root_id"] for p in pairs.values()], params.test_fraction, params.seed)
    train = order([p for p in pairs.values() if p["root_id"] not in test_roots], params.curriculum)
    test = order([p for p in pairs.values() if p["root_id"] in test_roots], "none")
    every = train + test
    metrics = {
        "steps": len(steps),
        "pairs": len(pairs),
        "train_pairs": len(train),
        "test_pairs": len(test),
        "train_roots": len({p["root_id"] for p in train}),
        "test_roots": len({p["root_id"] for p in test}),
        "curriculum": params.curriculum,
        "dropped_by_cause": {k: dict(sorted(v.items())) for k, v in dropped.items()},
        "pairs_by_strategy": dict(sorted(Counter(p["strategy"] for p in every).items())),
        "pairs_by_round": dict(sorted(Counter(str(p["round"]) for p in every).items())),
        "pairs_by_new_constraint": dict(sorted(Counter(c for p in every for c in p["new_constraints"]).items())),
        "mean_rejected_pass_fraction": round(sum(p["rejected_pass_fraction"] for p in every) / max(len(every), 1), 4),
    }
    return train, test, metrics


def _table(head: tuple[str, str], counts: dict[str, Any]) -> str:
    rows = "\n".join(f"| {k} | {v} |" for k, v in counts.items()) or "| (none) | 0 |"
    return f"| {head[0]} | {head[1]} |\n|---|---|\n{rows}"


#: the shipped seed set and its licence; another seed source's licence is its owner's to state
SHIPPED_SEEDS = ("data/self-instruct/seed_tasks.jsonl",
                 "the 175 Self-Instruct seed tasks (Wang et al. 2022), Apache-2.0", "apache-2.0")


def card_counts(train: list[dict], test: list[dict]) -> dict[str, dict[str, int]]:
    """The counts a card states, computed from the rows themselves (so a test can recount them)."""
    rows = train + test
    return {
        "split": {"train": len(train), "test": len(test)},
        "strategy": dict(sorted(Counter(p["strategy"] for p in rows).items())),
        "round": dict(sorted(Counter(str(p["round"]) for p in rows).items())),
        "added constraint": dict(sorted(Counter(c for p in rows for c in p["new_constraints"]).items())),
        "constraint in prompt": dict(sorted(Counter(c for p in rows for c in p["instruction_id_list"]).items())),
        "missed constraint": dict(sorted(Counter(c for p in rows for c in p["missed_constraints"]).items())),
    }


def dataset_card(train: list[dict], test: list[dict], metrics: dict[str, Any], params: Any,
                 pass_rates: dict[str, float] | None = None) -> str:
    """``README.md`` for the pairs: models, params hash, licence, and counts recomputed from the rows."""
    data_params = params.model_dump(include={"seed", "teacher", "judge", "evolve", "sample", "verify", "pair", "rounds"})
    rows = train + test
    teachers = ", ".join(sorted({p["chosen_model"] for p in rows})) or "(none)"
    rejected = ", ".join(sorted({p["rejected_model"] for p in rows})) or "(none)"
    judge = params.judge.model if params.judge else "none (every constraint is checked by code)"
    if params.seed.source == SHIPPED_SEEDS[0]:
        seeds, licence = SHIPPED_SEEDS[1], SHIPPED_SEEDS[2]
    else:
        seeds, licence = f"`{params.seed.source}` (its licence applies to the seed text)", "other"
    counts = card_counts(train, test)
    tables = "\n\n".join(f"### Pairs per {name}\n\n{_table((name, 'pairs'), c)}" for name, c in counts.items())
    rates = _table(("round", "teacher answers passing all constraints"), pass_rates or {})
    return f"""---
license: {licence}
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

Built by ecd (Evolutionary Contrastive Distillation). Strategies in this set: {", ".join(params.pair.strategy)}.

- `ecd`: an evolved instruction I(t), the teacher's verified answer R(t) (chosen) and the answer R(t-1)
  to the previous, easier instruction (rejected): a hard negative that misses a requirement I(t) added
  and passes at least {params.pair.min_rejected_pass_fraction:.0%} of I(t)'s requirements.
- `model_gap`: the strong model's verified answer over the weak model's answer to the same instruction.
- `random`: the verified answer over another seed's answer (a baseline).

| | |
|---|---|
| chosen answers by | `{teachers}` |
| rejected answers by | `{rejected}` |
| judge | `{judge}` |
| params hash | `{content_id(data_params)}` |
| pairs | {len(rows)} ({len(train)} train, {len(test)} test) |
| seeds | {seeds} |
| split | by seed instruction: {metrics['train_roots']} train roots, {metrics['test_roots']} test roots |
| train order | {"easy to hard by " + params.pair.curriculum if params.pair.curriculum != "none" else "by id (train shuffled)"} |
| mean share of constraints the rejected answer passes | {metrics['mean_rejected_pass_fraction']} |

Format: TRL's conversational preference format (`prompt`, `chosen`, `rejected` as chat messages),
plus `instruction_id_list` and `kwargs` in IFEval's schema for the constraints of each prompt,
`missed_constraints` (those the rejected answer fails), `difficulty` (the curriculum's measure),
`strategy`, `round`, `root_id` and the models on each side.

## Teacher pass rates

{rates}

## Counts

{tables}
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
