"""From each strategy's candidate pairs to the table's two splits: matched rows or deduplication,
the split by seed, the order, and the stage's metrics.

The rules, as ``ecd.pairing`` states them for one strategy at a time:

- a strategy's pairs *by step*: where one step (row, round, chain) gave several, the first by pair id;
- *matched rows* (``pair.match``): the rows (prompt and chosen answer) that every matched strategy
  can pair, each taken from one step for all of them: the earliest (round, chain) among the steps
  where each has a pair. Each strategy of ``pair.strategy`` then gives its pair on that step; its
  other steps are duplicates (the row came from another step) or unmatched (another strategy cannot
  pair the row). Two strategies' pairs with the same id: the later strategy's is kept;
- without matching, a pair whose id an earlier pair (or strategy) has is a duplicate;
- test pairs are those of the ``split`` stage's held-out seeds; pairs are ordered by id, or matched
  rows by row then strategy, and train pairs easy to hard by ``difficulty`` when a curriculum is on.

Everything runs on :class:`ecd.stubs.Columns` with numpy's sorts and set operations, so that two
million candidate pairs take a few hundred megabytes, not gigabytes of dicts and tuples.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from ecd.pairs import card_counts
from ecd.params import PairParams
from ecd.stubs import STUB_FIELDS, Columns, field, texts

Index: TypeAlias = npt.NDArray[np.int64]


def _step_keys(stubs: Columns) -> npt.NDArray[Any]:
    """One bytes key per pair for its step: row id, round and chain (ids are hex: ``:`` parts them)."""
    c = stubs.columns
    return np.char.add(np.char.add(np.char.add(c["row_id"], b":"), np.char.add(c["round"].astype(np.bytes_), b":")),
                       c["chain"])


def by_step(stubs: Columns) -> tuple[Index, npt.NDArray[Any]]:
    """(the index of each step's first pair by id, those steps' keys)."""
    if not len(stubs):
        return np.array([], dtype=np.int64), np.array([], "S1")
    by_id = np.argsort(stubs.columns["id"], kind="stable")
    keys = _step_keys(stubs)
    _, first = np.unique(keys[by_id], return_index=True)
    index = np.sort(by_id[first])
    return index, keys[index]


def matched_steps(made: Mapping[str, Columns]) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """(the steps' keys, their rows' ids): for each row every strategy of ``made`` can pair, the step
    all of them take it from, the earliest by (round, chain)."""
    steps = {s: by_step(stubs) for s, stubs in made.items()}
    keys = [k for _, k in steps.values()]
    common = keys[0]
    for other in keys[1:]:
        common = np.intersect1d(common, other, assume_unique=True)
    first = next(iter(made.values()))
    index, step_keys = next(iter(steps.values()))
    order = np.argsort(step_keys)  # each common key's pair in the first strategy, through a sort of its keys
    at = index[order[np.searchsorted(step_keys[order], common)]]
    rows = first.columns["row_id"][at]
    earliest = np.lexsort((rows, first.sort_key("chain")[at], first.columns["round"][at]))
    _, one = np.unique(rows[earliest], return_index=True)
    chosen = earliest[one]
    return common[chosen], rows[chosen]


def combine(made_by: Mapping[str, tuple[Columns, Counter[str]]], params: PairParams, test_roots: set[str], steps: int
            ) -> tuple[Columns, Index, Index, dict[str, Any]]:
    """Each strategy's candidate pairs (with the causes of the steps that gave none) made into the
    table's two splits and the stage's metrics, by the module's rules. Returns (every pair of
    ``pair.strategy``'s strategies, one strategy after another; the train pairs' indices into it, in
    order; the test pairs'; the metrics). The causes are counted into ``made_by``'s counters."""
    every = Columns.concat([made_by[s][0] for s in params.strategy], STUB_FIELDS)
    offsets = dict(zip(params.strategy, np.cumsum([0, *[len(made_by[s][0]) for s in params.strategy]]).tolist()))
    dropped: dict[str, Counter[str]] = {}
    matched_rows: int | None = None
    if params.match:
        chosen_keys, chosen_rows = matched_steps({s: made_by[s][0] for s in params.match})
        matched_rows = len(chosen_keys)
        picked = []
        for strategy in params.strategy:
            made, causes = made_by[strategy]
            index, keys = by_step(made)
            exact = np.isin(keys, chosen_keys)
            known_row = np.isin(made.columns["row_id"][index], chosen_rows)
            causes["duplicate"] += len(made) - len(index) + int(np.sum(known_row & ~exact))
            causes["unmatched"] += int(np.sum(~known_row))
            if int(np.sum(exact)) < matched_rows:  # a strategy outside the match (an extra arm) may lack a row
                causes["no_pair_on_matched_row"] += matched_rows - int(np.sum(exact))
            picked.append(index[exact] + offsets[strategy])
            dropped[strategy] = causes
        chosen = np.concatenate(picked) if picked else np.array([], dtype=np.int64)
        _, last = np.unique(every.columns["id"][chosen[::-1]], return_index=True)  # the later strategy's pair of an id
        chosen = chosen[::-1][last]
    else:
        _, first = np.unique(every.columns["id"], return_index=True)  # an id's first pair, strategy by strategy
        chosen = np.sort(first)
        for strategy in params.strategy:
            made, causes = made_by[strategy]
            start = offsets[strategy]
            kept = int(np.sum((chosen >= start) & (chosen < start + len(made))))
            if kept < len(made):
                causes["duplicate"] += len(made) - kept
            dropped[strategy] = causes
    is_test = np.isin(every.columns["root_id"][chosen], texts(test_roots))
    train = _order(every, chosen[~is_test], params.curriculum, bool(params.match))
    test = _order(every, chosen[is_test], "none", bool(params.match))
    train_rows, test_rows = every.take(train), every.take(test)
    counts = card_counts(train_rows, test_rows)
    metrics = {
        "steps": steps,
        "pairs": len(chosen),
        "train_pairs": len(train),
        "test_pairs": len(test),
        "train_roots": len(np.unique(train_rows.columns["root_id"])),
        "test_roots": len(np.unique(test_rows.columns["root_id"])),
        "curriculum": params.curriculum,
        "matched_rows": matched_rows if matched_rows is not None else len(np.unique(every.columns["row_id"][chosen])),
        "dropped_by_cause": {k: dict(sorted(v.items())) for k, v in dropped.items()},
        "pairs_by_strategy": counts["strategy"],
        "pairs_by_round": counts["round"],
        "pairs_by_new_constraint": counts["added constraint"],
        "mean_rejected_pass_fraction": round(sum(field(train_rows, "rejected_pass_fraction") + field(test_rows, "rejected_pass_fraction"))
                                             / max(len(chosen), 1), 4),
    }
    return every, train, test, metrics


def _order(stubs: Columns, index: Index, curriculum: str, matched: bool) -> Index:
    """``index`` ordered by pair id, or matched rows by row then strategy; easy to hard by their
    ``difficulty`` first when a curriculum is on."""
    part = stubs.take(index)
    keys = [part.sort_key("strategy"), part.columns["row_id"]] if matched else [part.columns["id"]]
    if curriculum != "none":
        keys.append(part.columns["difficulty"])
    return index[np.lexsort(keys)]
