"""Pairing strategies, curriculum order, deduplication and the dataset card.

``model_gap`` is tested on real answers of models of graded strength to Self-Instruct's 252
user-oriented instructions: text-davinci-003 (data/self-instruct, shipped for evaluation) over
text-davinci-001 and davinci-t0-ft (tests/fixtures/self-instruct). Their authors ask that these are
never used as training data: here they are test fixtures only.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ecd import constraints as C
from ecd import pairing
from ecd.pairing import model_gap_pairs, weak_instructions
from ecd.pairs import card_counts, dataset_card, load_pairs, save_pairs, save_rows
from ecd.params import PairParams, Params, validate_params
from ecd.schema import Step
from ecd.split import split_roots
from ecd.verification import check_all

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "self-instruct"
STRONG = ROOT / "data" / "self-instruct" / "text-davinci-003_predictions.jsonl"


def build_pairs(steps: list[Step], params: PairParams):
    """``pairing.build_pairs`` with the split drawn over the steps' seeds and the code checker."""
    held_out = split_roots([s["root_id"] for s in steps], 0.2, params.seed)
    return pairing.build_pairs(steps, params, held_out, check_all)


def _answers(path: Path) -> list[str]:
    return [json.loads(line)["response"] for line in path.read_text().splitlines()]


def _steps(constraints: list[dict] | None = None) -> list[dict]:
    """One step per user-oriented instruction, text-davinci-003's answer as the verified chosen side."""
    cons = constraints or []
    steps = []
    for k, (line, strong) in enumerate(zip(STRONG.read_text().splitlines(), _answers(STRONG))):
        rec = json.loads(line)
        text = rec["instruction"].strip() + (f"\n\n{rec['input'].strip()}" if rec["input"].strip() else "")
        results = check_all(strong, cons)
        steps.append({
            "root_id": f"u{k}", "chain": f"u{k}-c0", "round": 1,
            "instruction": {"id": f"i{k}", "text": text, "constraints": cons},
            "chosen": {"id": f"s{k}", "text": strong, "model": "text-davinci-003"},
            "chosen_results": results, "rejected": {"id": f"r{k}", "text": "", "model": "none"},
            "rejected_results": [], "new_constraints": [c["id"] for c in cons],
        })
    return steps


def _weak(name: str) -> dict[str, dict]:
    return {f"i{k}": {"id": f"{name}{k}", "text": t, "model": name}
            for k, t in enumerate(_answers(FIXTURES / f"{name}_predictions.jsonl"))}


@pytest.mark.parametrize("weak_name", ["text-davinci-001", "davinci-t0-ft"])
def test_model_gap_pairs_put_the_stronger_model_first(weak_name: str) -> None:
    steps, weak = _steps(), _weak(weak_name)
    pairs, dropped = model_gap_pairs(steps, weak, PairParams(strategy=["model_gap"], match=[]), check_all)
    expected_empty = sum(1 for w in weak.values() if not w["text"].strip())
    expected_same = sum(1 for s in steps if weak[s["instruction"]["id"]]["text"].strip()
                        and " ".join(weak[s["instruction"]["id"]]["text"].split()) == " ".join(s["chosen"]["text"].split()))
    assert len(pairs) == 252 - expected_empty - expected_same
    assert dropped.get("weak_empty", 0) == expected_empty and dropped.get("no_gap", 0) == expected_same
    for p in pairs:
        assert p["strategy"] == "model_gap"
        assert p["chosen_model"] == "text-davinci-003" and p["rejected_model"] == weak_name
        k = int(p["instruction_id"][1:])
        assert p["chosen"][0]["content"] == steps[k]["chosen"]["text"]
        assert p["rejected"][0]["content"] == weak[p["instruction_id"]]["text"]


def test_model_gap_with_a_constraint_keeps_only_real_gaps() -> None:
    cons = [{"id": "punctuation:no_comma", "kwargs": {}}]
    steps, weak = _steps(cons), _weak("davinci-t0-ft")
    pairs, dropped = model_gap_pairs(steps, weak, PairParams(strategy=["model_gap"], match=[]), check_all)
    no_comma = lambda t: "," not in t  # noqa: E731  (IFEval's rule, said plainly)
    strong_ok = [s for s in steps if no_comma(s["chosen"]["text"])]
    expected = [s for s in strong_ok if weak[s["instruction"]["id"]]["text"].strip()
                and not no_comma(weak[s["instruction"]["id"]]["text"])]
    assert {p["instruction_id"] for p in pairs} == {s["instruction"]["id"] for s in expected}
    assert dropped["chosen_fails"] == 252 - len(strong_ok)
    assert all(p["missed_constraints"] == ["punctuation:no_comma"] and p["model_gap"] == 1.0 for p in pairs)


def test_weak_limit_draws_the_weak_models_instructions_and_counts_the_rest() -> None:
    cons = [{"id": "punctuation:no_comma", "kwargs": {}}]
    steps, weak = _steps(cons), _weak("davinci-t0-ft")
    usable = [s["instruction"]["id"] for s in steps if all(r["passed"] for r in s["chosen_results"])]
    assert [i["id"] for i in weak_instructions(steps, PairParams(strategy=["model_gap"], match=[]))] == usable
    params = PairParams(strategy=["model_gap"], match=[], weak_limit=40)
    drawn = [i["id"] for i in weak_instructions(steps, params)]
    assert len(drawn) == 40 and set(drawn) <= set(usable)
    assert drawn == [i for i in usable if i in set(drawn)]  # in step order
    assert drawn == [i["id"] for i in weak_instructions(steps, params)]  # the same draw every run
    assert drawn != [i["id"] for i in weak_instructions(steps, PairParams(strategy=["model_gap"], match=[], weak_limit=40, seed=1))]
    answered = {i: weak[i] for i in drawn}
    pairs, dropped = model_gap_pairs(steps, answered, params, check_all)
    assert {p["instruction_id"] for p in pairs} <= set(drawn)
    assert dropped["weak_not_sampled"] == len(usable) - 40
    assert dropped.get("weak_empty", 0) == sum(1 for i in drawn if not weak[i]["text"].strip())


def _ecd_steps() -> list[dict]:
    """Programmatic chains over real seeds: R(t) rewrites R(t-1) to meet one more constraint."""
    from ecd.seeds import load_seeds
    from ecd.params import SeedParams

    types = [("punctuation:no_comma", {}), ("change_case:english_lowercase", {}),
             ("startend:end_checker", {"end_phrase": "Is there anything else I can help with?"})]
    steps = []
    for seed in load_seeds(SeedParams(limit=30)):
        prev_text, cons = seed["reference"], []
        for rnd, (tid, kw) in enumerate(types, 1):
            cons = [*cons, {"id": tid, "kwargs": kw}]
            text = C.apply_rewrites(seed["reference"], [C.Constraint.from_record(c) for c in cons])
            if text is None:
                break
            steps.append({
                "root_id": seed["root_id"], "chain": seed["root_id"] + "-c0", "round": rnd,
                "instruction": {"id": f"{seed['id']}-{rnd}", "text": seed["text"] + f" ({rnd})", "constraints": cons,
                                "reference": seed["reference"]},
                "chosen": {"id": f"{seed['id']}-a{rnd}", "text": text, "model": "programmatic:v1"},
                "rejected": {"id": f"{seed['id']}-a{rnd - 1}", "text": prev_text, "model": "programmatic:v1",
                             "instruction_id": seed["root_id"] if rnd == 1 else f"{seed['id']}-{rnd - 1}"},
                "chosen_results": check_all(text, cons), "rejected_results": check_all(prev_text, cons),
                "new_constraints": [tid],
            })
            prev_text = text
    return steps


def test_strategies_combine_deduplicate_and_split_by_seed() -> None:
    steps = _ecd_steps()
    params = PairParams(strategy=["ecd", "random"], match=[], min_rejected_pass_fraction=0.5)
    train, test, metrics = build_pairs(steps, params)
    rows = train + test
    assert metrics["pairs_by_strategy"] == {"ecd": sum(p["strategy"] == "ecd" for p in rows),
                                            "random": sum(p["strategy"] == "random" for p in rows)}
    assert len({p["id"] for p in rows}) == len(rows)
    assert not {p["root_id"] for p in train} & {p["root_id"] for p in test}
    for p in rows:
        if p["strategy"] == "ecd":  # the barely-misses property, rechecked
            assert p["round"] >= 2 and p["rejected_pass_fraction"] >= 0.5 and p["missed_constraints"]
        else:  # another seed's answer
            other = next(s for s in steps if s["chosen"]["id"] == p["rejected_id"])
            assert other["root_id"] != p["root_id"]
    # every dropped step is counted under the rule it broke
    expected = Counter()
    for st in steps:
        passed = [r["passed"] for r in st["rejected_results"]]
        if not all(r["passed"] for r in st["chosen_results"]):  # langdetect's lowercase quirk, see test_constraints
            expected["chosen_fails"] += 1
        elif all(passed):
            expected["rejected_passes"] += 1
        elif sum(passed) / len(passed) < 0.5:
            expected["rejected_misses_too_much"] += 1
    assert metrics["dropped_by_cause"]["ecd"] == dict(expected)
    assert expected["rejected_misses_too_much"] >= sum(s["round"] == 1 for s in steps) - expected["rejected_passes"]
    again = build_pairs(steps, params)
    assert [p["id"] for p in again[0]] == [p["id"] for p in train]
    with pytest.raises(ValueError, match="did you mean 'model_gap'"):
        PairParams(strategy=["ecd", "modelgap"])


@pytest.mark.parametrize("curriculum", ["round", "missed"])
def test_curriculum_orders_train_pairs_easy_to_hard(curriculum: str) -> None:
    train, _, _ = build_pairs(_ecd_steps(), PairParams(curriculum=curriculum, match=[], min_rejected_pass_fraction=0.0))
    levels = [p["difficulty"] for p in train]
    assert levels == sorted(levels) and len(set(levels)) > 1
    expected = {"round": [float(p["round"]) for p in train], "missed": [p["rejected_pass_fraction"] for p in train]}
    assert levels == expected[curriculum]


def test_matched_rows_differ_in_the_negative_only(tmp_path: Path) -> None:
    """With ``pair.match`` every strategy pairs the same rows (instruction and chosen answer), in the
    same order, and the control's rows file is byte-identical whichever strategy is trained."""
    steps = _ecd_steps()
    runs = {s: build_pairs(steps, PairParams(strategy=[s], match=["ecd", "random"], min_rejected_pass_fraction=0.0))
            for s in ("ecd", "random")}
    ecd_train, random_train = runs["ecd"][0], runs["random"][0]
    assert ecd_train and [p["row_id"] for p in ecd_train] == [p["row_id"] for p in random_train]
    assert [(p["prompt"], p["chosen"]) for p in ecd_train] == [(p["prompt"], p["chosen"]) for p in random_train]
    # each row from the same evolution step for every strategy: same round, chain and seed
    assert [(p["round"], p["chain"], p["root_id"]) for p in ecd_train] == [(p["round"], p["chain"], p["root_id"]) for p in random_train]
    assert all(e["rejected"] != r["rejected"] for e, r in zip(ecd_train, random_train))
    assert {p["strategy"] for p in random_train} == {"random"}
    assert runs["ecd"][2]["matched_rows"] == runs["random"][2]["matched_rows"] == len(ecd_train) + len(runs["ecd"][1])
    own, _, _ = build_pairs(steps, PairParams(strategy=["ecd"], match=[], min_rejected_pass_fraction=0.0))
    assert {p["row_id"] for p in ecd_train} <= {p["row_id"] for p in own}  # matching only removes rows
    files = []
    for s in ("ecd", "random"):
        save_rows(tmp_path / f"{s}.parquet", runs[s][0])
        files.append((tmp_path / f"{s}.parquet").read_bytes())
    assert files[0] == files[1]
    with pytest.raises(ValueError, match="not in pair.match"):
        PairParams(strategy=["model_gap"], match=["ecd", "random"])


def test_seed_answer_is_an_extra_arm_on_the_matched_rows_with_r0_as_the_negative(tmp_path: Path) -> None:
    """``seed_answer`` pairs the rows ECD and random match (it is outside ``pair.match``, so adding it
    changes no other arm's rows, nor the control's rows file) with the chain's R(0) as the negative:
    the seed's own answer, which misses more of I(t) than R(t-1) does."""
    steps = _ecd_steps()
    r0 = {s["root_id"]: s["rejected"]["text"] for s in steps if s["round"] == 1}
    runs = {s: build_pairs(steps, PairParams(strategy=[s], match=["ecd", "random"], min_rejected_pass_fraction=0.0))
            for s in ("ecd", "seed_answer")}
    ecd_train, seed_train = runs["ecd"][0], runs["seed_answer"][0]
    assert seed_train and [p["row_id"] for p in seed_train] == [p["row_id"] for p in ecd_train]
    assert {p["strategy"] for p in seed_train} == {"seed_answer"}
    for p in seed_train + runs["seed_answer"][1]:
        assert p["rejected"][0]["content"] == r0[p["root_id"]]
        step = next(s for s in steps if s["instruction"]["id"] == p["instruction_id"])
        checked = check_all(r0[p["root_id"]], step["instruction"]["constraints"])
        assert p["missed_constraints"] == [r["id"] for r in checked if not r["passed"]] != []
    later = [(e, s) for e, s in zip(ecd_train, seed_train) if e["round"] >= 2]
    assert later and any(e["rejected"] != s["rejected"] for e, s in later)
    assert sum(len(s["missed_constraints"]) for _, s in later) > sum(len(e["missed_constraints"]) for e, _ in later)
    assert runs["seed_answer"][2]["matched_rows"] == runs["ecd"][2]["matched_rows"]
    assert runs["seed_answer"][2]["dropped_by_cause"]["seed_answer"].get("no_pair_on_matched_row", 0) == 0
    files = []
    for s in ("ecd", "seed_answer"):
        save_rows(tmp_path / f"{s}.parquet", runs[s][0])
        files.append((tmp_path / f"{s}.parquet").read_bytes())
    assert files[0] == files[1]
    # a seed whose R(0) is not among the steps gives no seed_answer pair, counted on its matched rows
    cut = [s for s in steps if not (s["round"] == 1 and s["root_id"] == steps[0]["root_id"])]
    _, _, metrics = build_pairs(cut, PairParams(strategy=["seed_answer"], match=["ecd", "random"], min_rejected_pass_fraction=0.0))
    lost = metrics["dropped_by_cause"]["seed_answer"]
    assert lost["no_seed_answer"] >= 1 and lost.get("no_pair_on_matched_row", 0) >= 1


def test_a_matched_weak_model_answers_only_instructions_a_matched_row_can_come_from(tiny_model: Path) -> None:
    """With ``model_gap`` in ``pair.match``, the weak model (the real tiny student here) is asked only
    for instructions ECD and random can both pair: round 1's steps, whose R(t-1) passes none of its one
    constraint, can make no ECD pair, so the weak model never answers them."""
    from ecd.params import ModelParams

    steps = _ecd_steps()
    weak = ModelParams(backend="transformers", model=str(tiny_model), temperature=1.0, max_new_tokens=4)
    params = PairParams(strategy=["model_gap"], match=["ecd", "random", "model_gap"], weak=weak)
    answered = pairing.weak_answers(steps, params, check_all)
    ecd_ids = {p["instruction_id"] for p in pairing.ecd_pairs(steps, params)[0]}
    random_ids = {p["instruction_id"] for p in pairing.random_pairs(steps, params, check_all)[0]}
    assert answered and set(answered) <= ecd_ids & random_ids
    assert not any(s["round"] == 1 for s in steps if s["instruction"]["id"] in answered)
    unmatched = pairing.weak_answers(steps, params.model_copy(update={"match": []}), check_all)
    assert unmatched is not None and len(unmatched) > len(answered)  # unmatched: every usable instruction


def test_card_counts_match_the_saved_data(tmp_path: Path) -> None:
    train, test, metrics = build_pairs(_ecd_steps(), PairParams(strategy=["ecd", "random"]))
    params = validate_params({"pair": {"strategy": ["ecd", "random"]}})
    card = dataset_card(train, test, metrics, params, {"r0": 1.0, "r1": 1.0})
    save_pairs(tmp_path / "pairs", train, test, card)
    saved = [load_pairs(tmp_path / "pairs", s).to_list() for s in ("train", "test")]
    counts = card_counts(*saved)
    text = (tmp_path / "pairs" / "README.md").read_text()
    for name, table in counts.items():
        section = text.split(f"### Pairs per {name}\n")[1].split("###")[0]
        stated = dict(re.findall(r"^\| (\S+) \| (\d+) \|$", section, re.M))
        assert {k: int(v) for k, v in stated.items()} == table, name
    assert f"| pairs | {len(train) + len(test)} ({len(train)} train, {len(test)} test) |" in text
    assert "license: apache-2.0" in text and "Apache-2.0" in text
    assert pq.read_schema(tmp_path / "pairs" / "train.parquet").names == pq.read_schema(tmp_path / "pairs" / "test.parquet").names
    assert isinstance(params, Params)
