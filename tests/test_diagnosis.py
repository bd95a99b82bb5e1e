"""ecd/diagnosis.py: what pairs are made of, and the students' scores by constraint type."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ecd.diagnosis import (anatomy_markdown, pair_anatomy, read_pairs_at, reward_markdown, reward_view, type_markdown,
                           type_scores, word_diff)

CHOSEN = "the harbour at dawn is quiet and the boats rest on grey water"


def _pair(strategy: str, rejected: str, missed: list[str], new: list[str], passed: float) -> dict:
    return {"strategy": strategy, "chosen": [{"role": "assistant", "content": CHOSEN}],
            "rejected": [{"role": "assistant", "content": rejected}], "missed_constraints": missed,
            "new_constraints": new, "rejected_pass_fraction": passed, "instruction_id_list": ["a", "b"]}


def test_anatomy_tells_a_hard_negative_from_an_easy_one() -> None:
    hard = CHOSEN.replace("quiet", "QUIET")  # the same answer, the added requirement missed
    pairs = [_pair("ecd", hard, ["change_case:capital_word_frequency"], ["change_case:capital_word_frequency"], 0.5),
             _pair("ecd", hard, ["punctuation:no_comma", "detectable_format:title"], ["punctuation:no_comma"], 0.5),
             _pair("random", "a recipe for bread with flour and salt", ["a", "b"], ["punctuation:no_comma"], 0.0)]
    a = pair_anatomy(pairs)
    assert a["ecd"]["pairs"] == 2 and a["ecd"]["missed_only_added"] == 0.5  # the second also misses an older one
    assert a["ecd"]["similarity"] > 0.9 > 0.2 > a["random"]["similarity"]
    assert a["ecd"]["length_ratio"] == pytest.approx(1.0) and a["random"]["length_ratio"] < 1.0
    assert a["ecd"]["top_added_types"][0][1] == 0.5 and a["random"]["rejected_pass_fraction"] == 0.0
    table = anatomy_markdown(a)
    assert "| ecd | 2 | 50% | 0.50 |" in table and "punctuation:no_comma 100%" in table


def test_type_scores_count_each_instruction_once_and_skip_unscored() -> None:
    records = {"control": [{"instruction_id_list": ["x", "y"], "follow_instruction_list": [True, False]},
                           {"instruction_id_list": ["x"], "follow_instruction_list": [None]}],
               "ecd": [{"instruction_id_list": ["x", "y"], "follow_instruction_list": [True, True]},
                       {"instruction_id_list": ["x"], "follow_instruction_list": [False]}]}
    scores = type_scores(records)
    assert scores == {"x": {"control": (1, 1), "ecd": (1, 2)}, "y": {"control": (0, 1), "ecd": (1, 1)}}
    table = type_markdown(scores, ["control", "ecd"], trained={"y"})
    assert "| x | 2 | 1.00 | 0.50 |" in table and "| y * | 1 | 0.00 | 1.00 |" in table


def test_pairs_are_read_from_the_workspace(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data/pairs").mkdir(parents=True)
    rows = [_pair("ecd", "x", ["a"], ["a"], 0.5)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data/pairs/train.parquet")
    assert read_pairs_at("workspace") == rows


def test_the_reward_view_shows_answers_that_meet_the_checks_and_drop_the_task() -> None:
    reference = "The harbour wakes at dawn; fishermen mend nets while gulls circle the quiet boats."
    pair = {"instruction_id": "h1", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}],
            "chosen": [{"role": "assistant", "content": reference}]}
    prompt = "Describe a harbour at dawn. Do not use any commas."
    records = {"grpo": [{"key": "h1", "prompt": prompt, "response": "Yes."}],  # no comma, no harbour
               "control": [{"key": "h1", "prompt": prompt, "response": "The harbour wakes at dawn, fishermen mend nets "
                                                                        "while gulls circle the quiet boats."}]}
    view = reward_view(records, [pair])
    grpo, control = view["grpo"][0], view["control"][0]
    assert grpo["all_constraints"] == 1.0 and grpo["task_guard"] == 0.0  # met the check, kept nothing of the task
    assert control["all_constraints"] == 0.0 and control["task_guard"] > 0.8  # the comma: missed, the task: kept
    text = reward_markdown(view, records)
    assert "| grpo | 1 | 1.000 | 1.000 | 0.000 |" in text
    assert "- grpo (every constraint met; guard 0.00): Yes." in text and "- control (a constraint missed; guard" in text
    ablation = reward_markdown(view, records, focus="grpo", beside="control", table=False)
    assert "| arm |" not in ablation and ablation.lstrip().startswith("**h1**")


def test_word_diff_finds_the_commas_and_gives_both_texts_back() -> None:
    chosen = "the boats rest\non grey water and the gulls circle"
    rejected = "the boats rest,\non grey water, and the gulls circle"
    pieces = word_diff(chosen, rejected)
    assert "".join(a for _, a, _ in pieces) == chosen and "".join(b for _, _, b in pieces) == rejected
    assert [(a.strip(), b.strip()) for op, a, b in pieces if op != "equal"] == [("rest", "rest,"), ("water", "water,")]
