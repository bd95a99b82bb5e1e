"""The pair table: its Parquet schema, how it is saved and loaded, and its dataset card.

Pairs are stored in TRL's conversational preference format with metadata columns
(``ecd.schema.Pair``), including ``instruction_id_list`` and ``kwargs`` in IFEval's own schema,
so that a pair's constraints can be checked by any IFEval implementation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from string import Template
from typing import Any, Literal, cast, get_origin, get_type_hints

from ecd.errors import EcdError
from ecd.layout import stage_params
from ecd.records import atomic_path, content_id, write_text
from ecd.schema import Message, Pair
from ecd.stubs import Columns, field

#: the rows a card counts: pairs, or their stubs as columns
Rows = Sequence[Pair] | Sequence[dict[str, Any]] | Columns

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
    # IFBench's held-out types that evolution may draw in an ablation (evolve.allow_held_out_types)
    "min_words": "int64", "N": "int64", "small_n": "int64", "percentage": "int64",
}


def features() -> Any:
    """The pair table's schema, derived from ``ecd.schema.Pair`` field by field (explicit, so that
    every run writes the same Parquet schema; a field of a type with no column type is an error)."""
    from datasets import Features, List, Value

    msg = List({"role": Value("string"), "content": Value("string")})
    kw = {k: (List(Value("string")) if t == "list" else Value(t)) for k, t in KWARGS_SCHEMA.items()}

    def column(name: str, t: Any) -> Any:
        if name == "kwargs":  # every type's kwargs over one union schema
            return List(kw)
        if t is str or get_origin(t) is Literal:
            return Value("string")
        if t in (int, float):
            return Value("int64" if t is int else "float64")
        if t == list[Message]:
            return msg
        if t == list[str]:
            return List(Value("string"))
        raise TypeError(f"Pair.{name}: no table column for {t!r}")

    return Features({name: column(name, t) for name, t in get_type_hints(Pair).items()})


def ifeval_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """One constraint's kwargs in the pair table's schema (a key outside it would be lost: an error)."""
    unknown = set(kwargs) - set(KWARGS_SCHEMA)
    if unknown:
        raise KeyError(f"kwargs {sorted(unknown)} are not in the pair schema (ecd.pairs.KWARGS_SCHEMA)")
    return {k: kwargs.get(k) for k in KWARGS_SCHEMA}


def _table(head: tuple[str, str], counts: dict[str, Any]) -> str:
    rows = "\n".join(f"| {k} | {v} |" for k, v in counts.items()) or "| (none) | 0 |"
    return f"| {head[0]} | {head[1]} |\n|---|---|\n{rows}"


#: the shipped seed set and its licence; another seed source's licence is its owner's to state
SHIPPED_SEEDS = ("data/self-instruct/seed_tasks.jsonl",
                 "the 175 Self-Instruct seed tasks (Wang et al. 2022), Apache-2.0", "apache-2.0")



def _both(train: Rows, test: Rows, name: str) -> list[Any]:
    return field(train, name) + field(test, name)


def card_counts(train: Rows, test: Rows) -> dict[str, dict[str, int]]:
    """The counts a card states, computed from the rows themselves (so a test can recount them);
    rows are pairs or their stubs (``ecd.stubs``)."""
    def count(name: str) -> dict[str, int]:
        return dict(sorted(Counter(c for values in _both(train, test, name) for c in values).items()))

    return {
        "split": {"train": len(train), "test": len(test)},
        "strategy": dict(sorted(Counter(_both(train, test, "strategy")).items())),
        "round": dict(sorted(Counter(str(r) for r in _both(train, test, "round")).items())),
        "added constraint": count("new_constraints"),
        "constraint in prompt": count("instruction_id_list"),
        "missed constraint": count("missed_constraints"),
    }


#: the dataset card (``data/pairs/README.md``); ``dataset_card`` fills it from the rows and params
CARD_TEMPLATE = Template("""---
license: $licence
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

Built by ecd (Evolutionary Contrastive Distillation). Strategies in this set: $strategies.

- `ecd`: an evolved instruction I(t), the teacher's verified answer R(t) (chosen) and the answer R(t-1)
  to the previous, easier instruction (rejected): a hard negative that misses a requirement I(t) added
  and passes at least $min_pass of I(t)'s requirements.
- `model_gap`: the strong model's verified answer over the weak model's answer to the same instruction.
- `random`: the verified answer over another seed's answer (a baseline).
- `seed_answer`: the verified answer over R(0), the answer to the seed instruction the chain evolved
  from: the same task, none of the added requirements attempted.

| | |
|---|---|
| chosen answers by | `$teachers` |
| rejected answers by | `$rejected` |
| judge | `$judge` |
| params hash | `$params_hash` |
| pairs | $n_pairs ($n_train train, $n_test test) |
| seeds | $seeds |
| split | by seed instruction: $train_roots train roots, $test_roots test roots |
| train order | $train_order |
| mean share of constraints the rejected answer passes | $mean_rejected_pass_fraction |

Format: TRL's conversational preference format (`prompt`, `chosen`, `rejected` as chat messages),
plus `instruction_id_list` and `kwargs` in IFEval's schema for the constraints of each prompt,
`missed_constraints` (those the rejected answer fails), `difficulty` (the curriculum's measure),
`strategy`, `round`, `root_id` and the models on each side.

## Teacher pass rates

$rates

## Counts

$tables
""")


def dataset_card(train: Rows, test: Rows, metrics: dict[str, Any], params: Any,
                 pass_rates: dict[str, float] | None = None) -> str:
    """``README.md`` for the pairs (or their stubs): models, params hash, licence, and counts
    recomputed from the rows."""
    if params.seeds.source == SHIPPED_SEEDS[0]:
        seeds, licence = SHIPPED_SEEDS[1], SHIPPED_SEEDS[2]
    else:
        seeds, licence = f"`{params.seeds.source}` (its licence applies to the seed text)", "other"
    curriculum = params.pair.curriculum
    return CARD_TEMPLATE.substitute(
        licence=licence,
        strategies=", ".join(params.pair.strategy),
        min_pass=f"{params.pair.min_rejected_pass_fraction:.0%}",
        teachers=", ".join(sorted(set(_both(train, test, "chosen_model")))) or "(none)",
        rejected=", ".join(sorted(set(_both(train, test, "rejected_model")))) or "(none)",
        judge=params.judge.model if params.judge else "none (every constraint is checked by code)",
        # the sections that decide the pairs' content (the pair stage's params): their hash identifies the build
        params_hash=content_id(params.model_dump(include=stage_params("pair"))),
        n_pairs=len(train) + len(test), n_train=len(train), n_test=len(test),
        seeds=seeds,
        train_roots=metrics["train_roots"], test_roots=metrics["test_roots"],
        train_order=f"easy to hard by {curriculum}" if curriculum != "none" else "by id (train shuffled)",
        mean_rejected_pass_fraction=metrics["mean_rejected_pass_fraction"],
        rates=_table(("round", "teacher answers passing all constraints"), pass_rates or {}),
        tables="\n\n".join(f"### Pairs per {name}\n\n{_table((name, 'pairs'), c)}"
                           for name, c in card_counts(train, test).items()),
    )


def save_pairs(out_dir: str | Path, train: list[Pair], test: list[Pair], card: str) -> None:
    """Write ``train.parquet``, ``test.parquet`` and ``README.md`` into ``out_dir`` atomically."""
    from datasets import Dataset

    feats = features()
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for name, rows in (("train", train), ("test", test)):
            columns = {k: [r[k] for r in cast(list[dict[str, Any]], rows)] for k in feats}  # from_dict, unlike from_list, takes zero rows
            Dataset.from_dict(columns, features=feats).to_parquet(str(tmp / f"{name}.parquet"))
        write_text(tmp / "README.md", card)


#: the columns of the control's rows: a pair without its rejected side
#: a row is a pair less its negative: what the control trains on and what GRPO samples from
ROW_COLUMNS = ("row_id", "instruction_id", "prompt", "chosen", "instruction_id_list", "kwargs", "difficulty")


def save_rows(path: str | Path, train: list[Pair]) -> None:
    """The rows of the SFT-only control and GRPO: each train pair's prompt, chosen answer and
    constraints, in the pairs' order.

    A file of its own, so that the control and GRPO depend on the rows and not on the negatives: with
    matched rows (``pair.match``) every strategy writes the same bytes here, and DVC runs one control
    and one GRPO run for all of them."""
    from datasets import Dataset

    feats = features()
    columns = {k: [r[k] for r in cast(list[dict[str, Any]], train)] for k in ROW_COLUMNS}
    with atomic_path(Path(path)) as tmp:
        Dataset.from_dict(columns, features=type(feats)({k: feats[k] for k in ROW_COLUMNS})).to_parquet(str(tmp))


def load_rows(path: str | Path) -> Any:
    """The rows (``save_rows``) as a ``datasets.Dataset``."""
    return _load_parquet(Path(path), list(ROW_COLUMNS))


def load_pairs(pairs_dir: str | Path, split: str) -> Any:
    """One split as an in-memory ``datasets.Dataset`` (no copy into the HF cache)."""
    return _load_parquet(Path(pairs_dir) / f"{split}.parquet", list(features()))


def _load_parquet(path: Path, columns: list[str]) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset

    from ecd.layout import missing_input

    if not path.exists():
        raise missing_input(path)
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise EcdError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise EcdError(f"{path}: not a table of ecd's pairs: no column {', '.join(missing[:5])}"
                       f"{' ...' if len(missing) > 5 else ''} (the pair stage writes them; docs/data.md lists them)")
    return Dataset(table)
