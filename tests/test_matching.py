"""``ecd.matching`` against the rules it implements, written out the plain way (dicts and sorted
lists, as ``ecd.pairing`` held them before the pairs moved to columns): the same splits, order and
metrics on candidate pairs drawn to hit every rule — several pairs on one step, one row on several
steps and chains, ids shared across strategies, rows some strategy cannot pair, ties in difficulty."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from ecd.matching import combine
from ecd.pairs import card_counts
from ecd.params import PairParams
from ecd.records import content_id
from ecd.stubs import STUB_FIELDS, Columns


def _reference(made_by: dict[str, tuple[list[dict[str, Any]], Counter[str]]], params: PairParams, test_roots: set[str],
               steps: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    def by_step(made: list[dict[str, Any]]) -> dict[tuple[str, int, str], dict[str, Any]]:
        out: dict[tuple[str, int, str], dict[str, Any]] = {}
        for pair in sorted(made, key=lambda p: p["id"]):
            out.setdefault((pair["row_id"], pair["round"], pair["chain"]), pair)
        return out

    def order(pairs: list[dict[str, Any]], curriculum: str, matched: bool) -> list[dict[str, Any]]:
        key = (lambda p: (p["row_id"], p["strategy"])) if matched else (lambda p: p["id"])
        return sorted(pairs, key=key if curriculum == "none" else (lambda p: (p["difficulty"], key(p))))

    pairs: dict[str, dict[str, Any]] = {}
    dropped: dict[str, Counter[str]] = {}
    matched_rows = None
    if params.match:
        common = set.intersection(*[set(by_step(made_by[s][0])) for s in params.match])
        chosen: dict[str, tuple[str, int, str]] = {}
        for key in sorted(common, key=lambda k: (k[1], k[2], k[0])):
            chosen.setdefault(key[0], key)
        matched_rows = len(chosen)
        for strategy in params.strategy:
            made, causes = made_by[strategy]
            at_step = by_step(made)
            causes["duplicate"] += len(made) - len(at_step) + sum(k[0] in chosen and chosen[k[0]] != k for k in at_step)
            causes["unmatched"] += sum(k[0] not in chosen for k in at_step)
            for key in chosen.values():
                if key in at_step:
                    pairs[at_step[key]["id"]] = at_step[key]
                else:
                    causes["no_pair_on_matched_row"] += 1
            dropped[strategy] = causes
    else:
        for strategy in params.strategy:
            made, causes = made_by[strategy]
            for pair in made:
                if pair["id"] in pairs:
                    causes["duplicate"] += 1
                else:
                    pairs[pair["id"]] = pair
            dropped[strategy] = causes
    matched = bool(params.match)
    train = order([p for p in pairs.values() if p["root_id"] not in test_roots], params.curriculum, matched)
    test = order([p for p in pairs.values() if p["root_id"] in test_roots], "none", matched)
    counts = card_counts(train, test)
    return train, test, {
        "steps": steps, "pairs": len(pairs), "train_pairs": len(train), "test_pairs": len(test),
        "train_roots": len({p["root_id"] for p in train}), "test_roots": len({p["root_id"] for p in test}),
        "curriculum": params.curriculum,
        "matched_rows": matched_rows if matched_rows is not None else len({p["row_id"] for p in pairs.values()}),
        "dropped_by_cause": {k: dict(sorted(v.items())) for k, v in dropped.items()},
        "pairs_by_strategy": counts["strategy"], "pairs_by_round": counts["round"],
        "pairs_by_new_constraint": counts["added constraint"],
        "mean_rejected_pass_fraction": round(sum(p["rejected_pass_fraction"] for p in train + test) / max(len(train + test), 1), 4),
    }


def _candidates(rng: random.Random, strategies: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Candidate pairs from 12 seeds whose chains often reach the same rows: a step (row, round,
    chain) may give a strategy two pairs, and two strategies may give the same negative (one id)."""
    rows = [content_id("row", k) for k in range(40)]
    made: dict[str, list[dict[str, Any]]] = {s: [] for s in strategies}
    for k in range(400):
        row = rng.choice(rows)
        root = f"seed-{rows.index(row) % 12}"
        step = {"row_id": row, "root_id": root, "round": rng.randint(1, 3), "chain": f"{root}-c{rng.randint(0, 2)}"}
        for strategy in strategies:
            if rng.random() < 0.3 or (strategy == "random" and rows.index(row) >= 36):  # four rows random cannot pair
                continue
            negative = rng.choice(["shared", f"{strategy}{rng.randint(0, 1)}"])
            cons = tuple(rng.sample(["a", "b", "c", "d"], rng.randint(1, 3)))
            made[strategy].append({
                **step, "id": content_id(row, negative), "strategy": strategy, "instruction_id": content_id("i", row),
                "chosen_id": content_id("c", row), "rejected_id": content_id(negative), "chosen_model": "teacher",
                "rejected_model": rng.choice(["teacher", "weak"]), "n_constraints": len(cons),
                "new_constraints": [cons[0]], "missed_constraints": list(cons[:1 + rng.randint(0, len(cons) - 1)]),
                "rejected_pass_fraction": rng.choice([0.0, 0.25, 0.5, 2 / 3]), "model_gap": rng.random(),
                "difficulty": rng.choice([1.0, 2.0, 0.5]), "instruction_id_list": list(cons)})
    return made


@pytest.mark.parametrize("pair", [
    {"strategy": ["ecd"], "match": ["ecd", "random"]},
    {"strategy": ["ecd", "random", "seed_answer"], "match": ["ecd", "random"], "curriculum": "round"},
    {"strategy": ["random", "ecd"], "match": [], "curriculum": "missed"},
    {"strategy": ["ecd", "random"], "match": []},
])
@pytest.mark.parametrize("draw", range(3))
def test_columns_give_what_the_rules_give(pair: dict[str, Any], draw: int) -> None:
    params = PairParams.model_validate(pair)
    strategies = list(dict.fromkeys([*params.match, *params.strategy]))
    made = _candidates(random.Random(draw), strategies)
    test_roots = {f"seed-{k}" for k in range(0, 12, 4)}
    want = _reference({s: (p, Counter()) for s, p in made.items()}, params, test_roots, 400)
    every, train, test, metrics = combine({s: (Columns.of(p, STUB_FIELDS), Counter()) for s, p in made.items()},
                                          params, test_roots, 400)
    flat = [p for s in params.strategy for p in made[s]]
    assert metrics == want[2]
    assert [flat[i] for i in train.tolist()] == want[0] and [flat[i] for i in test.tolist()] == want[1]
    assert every.take(train).rows() == [{k: tuple(v) if isinstance(v, list) else v for k, v in p.items()} for p in want[0]]
    assert metrics["train_pairs"] > 20 and metrics["test_pairs"] > 5
    if params.match:  # the draws hit the matched rules' causes
        assert metrics["dropped_by_cause"]["ecd"]["duplicate"] > 0 and metrics["dropped_by_cause"]["ecd"]["unmatched"] > 0


def test_columns_hold_their_values_and_join_their_tables() -> None:
    rows = [{"a": "x", "n": 1, "f": 0.5, "v": ["p", "q"]}, {"a": "été", "n": 2, "f": 1 / 3, "v": ["q"]}]
    spec = {"a": "text", "n": "int", "f": "float", "v": "value"}
    one = Columns.of(rows, spec)  # type: ignore[arg-type]
    two = Columns.of([{"a": "zz", "n": 3, "f": 2.0, "v": ["q"]}], spec)  # type: ignore[arg-type]
    both = Columns.concat([one, Columns.of([], spec), two], spec)  # type: ignore[arg-type]
    assert both.rows() == [{"a": "x", "n": 1, "f": 0.5, "v": ("p", "q")}, {"a": "été", "n": 2, "f": 1 / 3, "v": ("q",)},
                           {"a": "zz", "n": 3, "f": 2.0, "v": ("q",)}]
    assert len(both.tables["v"]) == 2 and both[2]["a"] == "zz" and both.values("n") == [1, 2, 3]
    assert [type(v) for v in both[0].values()] == [str, int, float, tuple]
    assert both.take(both.sort_key("a").argsort()).values("a") == sorted(["x", "été", "zz"])
