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


def _changes(columns: list[npt.NDArray[Any]]) -> npt.NDArray[np.bool_]:
    """For rows sorted by ``columns``: where a row's values differ from the previous row's (the first row: True)."""
    n = len(columns[0])
    new = np.zeros(n, dtype=bool)
    new[:1] = True
    for c in columns:
        new[1:] |= c[1:] != c[:-1]
    return new


def by_step(stubs: Columns) -> Index:
    """The index of each step's (row, round, chain) first pair by id, in table order."""
    c = stubs.columns
    if not len(stubs):
        return np.array([], dtype=np.int64)
    order = np.lexsort((c["id"], c["chain"], c["round"], c["row_id"]))  # stable: equal ids keep table order
    step = [c["row_id"][order], c["round"][order], c["chain"][order]]
    return np.sort(order[_changes(step)])


def matched_steps(made: Mapping[str, Columns], others: Mapping[str, Columns]
                  ) -> tuple[dict[str, tuple[Index, npt.NDArray[np.bool_], npt.NDArray[np.bool_]]], int]:
    """Each row (prompt and chosen answer) that every strategy of ``made`` can pair is taken from one
    step for all of them: the earliest (round, chain) among the steps where each has a pair. For each
    strategy of ``made`` and ``others``: (its pairs by step, :func:`by_step`; which of them are on
    their row's matched step; which rows are matched at all), and how many rows are matched."""
    tables = {**others, **made}
    first = {s: by_step(t) for s, t in tables.items()}
    names = list(tables)

    def joined(name: str) -> npt.NDArray[Any]:
        return np.concatenate([tables[s].columns[name][first[s]] for s in names])

    row, rnd, chain = joined("row_id"), joined("round"), joined("chain")
    order = np.lexsort((chain, rnd, row))  # by row, then the earliest (round, chain) first
    step_no = np.empty(len(order), dtype=np.int64)  # the same number for the same step, in that order
    step_no[order] = np.cumsum(_changes([row[order], rnd[order], chain[order]])) - 1
    row_no = np.empty(len(order), dtype=np.int64)
    row_no[order] = np.cumsum(_changes([row[order]])) - 1
    steps, rows = int(step_no.max(initial=-1)) + 1, int(row_no.max(initial=-1)) + 1
    at = np.cumsum([0, *[len(first[s]) for s in names]])
    seen = np.zeros(steps, dtype=np.int64)  # how many matched strategies have a pair on each step
    for k, s in enumerate(names):
        if s in made:
            seen[step_no[at[k]:at[k + 1]]] += 1
    common = np.flatnonzero(seen == len(made))
    row_of = np.empty(steps, dtype=np.int64)
    row_of[step_no] = row_no
    matched, earliest = np.unique(row_of[common], return_index=True)
    chosen = np.full(rows, -1, dtype=np.int64)  # each row's matched step (-1: none)
    chosen[matched] = common[earliest]
    out = {}
    for k, s in enumerate(names):
        mine, mine_rows = step_no[at[k]:at[k + 1]], row_no[at[k]:at[k + 1]]
        out[s] = (first[s], chosen[mine_rows] == mine, chosen[mine_rows] >= 0)
    return out, len(matched)


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
        at_step, matched_rows = matched_steps({s: made_by[s][0] for s in params.match},
                                              {s: made_by[s][0] for s in params.strategy if s not in params.match})
        picked = []
        for strategy in params.strategy:
            made, causes = made_by[strategy]
            first, on, known = at_step[strategy]
            hits = int(np.sum(on))
            # a row already taken from another step is a duplicate; a row another strategy cannot pair, unmatched
            causes["duplicate"] += len(made) - len(first) + int(np.sum(known & ~on))
            causes["unmatched"] += int(np.sum(~known))
            if hits < matched_rows:  # a strategy outside the match (an extra arm) may lack a row
                causes["no_pair_on_matched_row"] += matched_rows - hits
            picked.append(first[on] + offsets[strategy])
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
    c = stubs.columns
    keys = [stubs.sort_key("strategy")[index], c["row_id"][index]] if matched else [c["id"][index]]
    if curriculum != "none":
        keys.append(c["difficulty"][index])
    return index[np.lexsort(keys)]
