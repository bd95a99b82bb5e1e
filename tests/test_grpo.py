"""GRPO with the constraint library as rewards: the rewards on fixed answers, the guard against
dropping the task, and real GRPOTrainer steps on a tiny student with both samplers."""

from __future__ import annotations

import json

import pytest

from ecd.errors import EcdError
from ecd.grpo import grpo_rows, train_grpo
from ecd.params import TrainParams, validate_params
from ecd.rewards import all_constraints, constraint_share, length_band, task_guard

LOWER_TITLE = {"instruction_id_list": ["change_case:english_lowercase", "detectable_format:title"], "kwargs": [{}, {}]}
PROMPT = [{"role": "user", "content": "Describe the river city's markets. Write in lowercase and give a title."}]
REFERENCE = "<<the river city>>\nthe river city grew around its bridges and markets, where its people traded fish."


def _score(fn, answer: str, reference: str | None = REFERENCE, conversational: bool = True) -> float:
    completion = [{"role": "assistant", "content": answer}] if conversational else answer
    columns = {k: [v] for k, v in LOWER_TITLE.items()} | {"reference": [reference]}
    return fn([PROMPT], [completion], **columns)[0]


@pytest.mark.parametrize(("answer", "share", "every"), [
    (REFERENCE, 1.0, 1.0),
    ("the markets sell fish.", 0.5, 0.0),  # lowercase, no title
    ("<<Markets>>\nThe Markets Sell Fish.", 0.5, 0.0),  # a title, not lowercase
    ("", 0.0, 0.0),
])
def test_constraint_rewards_are_ifeval_strict_verdicts(answer: str, share: float, every: float) -> None:
    for conversational in (True, False):
        assert _score(constraint_share, answer, conversational=conversational) == share
        assert _score(all_constraints, answer, conversational=conversational) == every


def test_the_guard_scores_an_answer_that_meets_the_constraints_and_drops_the_task_at_zero() -> None:
    gamed = "<<title>>"
    assert _score(all_constraints, gamed) == 1.0 and _score(task_guard, gamed) == 0.0
    assert _score(task_guard, REFERENCE) == 1.0
    # half the reference's content words, at a length inside the band: half the guard
    half = "<<the river city>>\nthe river city grew around its bridges, with people and more people here."
    assert 0.3 < _score(task_guard, half) < 0.8
    # the reference repeated eight times keeps every word but is 8x too long: outside the band
    assert _score(task_guard, "\n".join([REFERENCE] * 8)) == 0.0
    # no reference: the instruction's own words stand in, with no length band
    assert _score(task_guard, "the river city markets sell fish.", reference=None) > 0.0


def test_the_length_band() -> None:
    assert length_band(0, 10) == 0.0 and length_band(2, 10) == 0.4 and length_band(5, 10) == 1.0
    assert length_band(20, 10) == 1.0 and length_band(30, 10) == 0.5 and length_band(40, 10) == 0.0


def test_grpo_params_are_checked() -> None:
    with pytest.raises(EcdError, match="unknown reward 'task_gaurd' \\(did you mean 'task_guard'\\?\\)"):
        validate_params({"train": {"grpo": {"reward_weights": {"task_gaurd": 1.0}}}})
    with pytest.raises(EcdError, match="every reward weighs 0"):
        validate_params({"train": {"grpo": {"reward_weights": {"task_guard": 0.0}}}})
    with pytest.raises(EcdError, match="unknown GRPO loss 'ppo'"):
        validate_params({"train": {"grpo": {"loss_type": "ppo"}}})
    with pytest.raises(EcdError, match="num_generations: Input should be greater than or equal to 2"):
        validate_params({"train": {"grpo": {"num_generations": 1}}})


def _pairs(n: int) -> list[dict]:
    topics = ["the river", "a bridge", "the market", "fishing boats", "the old town", "city walls"]
    return [{"instruction_id": f"i{k}", "prompt": [{"role": "user", "content": f"Write about {topics[k % 6]}."}],
             "chosen": [{"role": "assistant", "content": f"<<{topics[k % 6]}>>\nthe story of {topics[k % 6]}."}],
             **LOWER_TITLE} for k in range(n)]


def test_grpo_rows_keep_one_row_per_instruction_in_order() -> None:
    pairs = _pairs(4) + _pairs(2)  # the last two repeat instructions i0 and i1
    rows = grpo_rows(pairs)
    assert [r["prompt"][0]["content"] for r in rows] == [p["prompt"][0]["content"] for p in pairs[:4]]
    assert rows[0]["reference"] == pairs[0]["chosen"][0]["content"] and grpo_rows(pairs, 3) == rows[:3]


@pytest.mark.parametrize(("generator", "lora"), [("ecd", False), ("trl", False), ("ecd", True)])
def test_grpo_steps_on_the_tiny_student_with_both_samplers(tiny_model, tmp_path, monkeypatch, generator: str, lora: bool
                                                           ) -> None:
    """Real GRPOTrainer steps: each sampler answers (ecd's loop also through a LoRA-wrapped model), the
    rewards score, the policy moves, the student is saved merged; with ecd's sampler the same params
    give the same weights."""
    from safetensors.torch import load_file

    params = TrainParams.model_validate({"grpo": {"prompts_per_step": 2, "num_generations": 4, "max_completion_length": 16,
                                                  "generator": generator, "learning_rate": 0.01},
                                         "lora": {"enabled": lora, "r": 4, "target_modules": ["q_proj", "v_proj"]}})
    rows = grpo_rows(_pairs(4))
    curve = train_grpo(tiny_model, rows, params, tmp_path / "out", tmp_path / "work")
    assert len(curve) == 2  # 4 instructions, 2 a step
    for key in ("reward", "rewards/constraint_share/mean", "rewards/all_constraints/mean", "rewards/task_guard/mean"):
        assert all(0.0 <= step[key] <= 2.0 for step in curve), key
    assert all(step["completions/mean_length"] > 0 for step in curve)
    assert not any("step_time" in step for step in curve)  # wall-clock time stays out of DVC's outputs
    before, after = load_file(tiny_model / "model.safetensors"), load_file(tmp_path / "out/model.safetensors")
    assert any(not before[k].equal(after[k]) for k in before), "the policy did not move"
    assert json.loads((tmp_path / "out/config.json").read_text())["use_cache"] is True
    if generator == "ecd" and not lora:
        monkeypatch.setenv("ECD_TIMINGS", str(tmp_path / "timings.jsonl"))
        train_grpo(tiny_model, rows, params, tmp_path / "again", tmp_path / "work2")
        timings = [json.loads(line) for line in (tmp_path / "timings.jsonl").read_text().splitlines()]
        assert [t["label"] for t in timings] == ["train grpo: sampling"] and timings[0]["seconds"] >= 0  # where the time went
        again = load_file(tmp_path / "again/model.safetensors")
        assert all(after[k].equal(again[k]) for k in after), "the same params gave other weights"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="on a GPU with vllm the path would run, not refuse")
def test_the_vllm_generator_is_refused_clearly_where_it_cannot_run(tiny_model, tmp_path) -> None:
    """TRL's vLLM path needs CUDA and vllm: on a CPU machine ``generator: vllm`` names what is missing
    before any trainer is built."""
    params = TrainParams.model_validate({"grpo": {"generator": "vllm"}})
    with pytest.raises(EcdError, match="generator: vllm needs a CUDA GPU"):
        train_grpo(tiny_model, grpo_rows(_pairs(2)), params, tmp_path / "out", tmp_path / "work")


def test_micro_batches_take_the_same_step_with_less_at_once(tiny_model, tmp_path) -> None:
    """``micro_batch`` splits a step's answers into forward and backward passes whose gradients add up:
    the same answers are sampled and the weights end where one pass over all of them puts them."""
    from safetensors.torch import load_file

    def weights(micro: int | None, name: str) -> dict:
        params = TrainParams.model_validate({"grpo": {"prompts_per_step": 2, "num_generations": 4, "max_completion_length": 16,
                                                      "learning_rate": 0.01, "micro_batch": micro}})
        curve = train_grpo(tiny_model, grpo_rows(_pairs(4)), params, tmp_path / name, tmp_path / f"work-{name}")
        assert len(curve) == 2
        return load_file(tmp_path / name / "model.safetensors")

    whole, split = weights(None, "whole"), weights(4, "split")
    assert all(torch_allclose(whole[k], split[k]) for k in whole)
    with pytest.raises(ValueError, match="micro_batch 3 does not divide a step's 8 answers"):
        TrainParams.model_validate({"grpo": {"prompts_per_step": 2, "num_generations": 4, "micro_batch": 3}})


def torch_allclose(a, b) -> bool:
    import torch

    return torch.allclose(a, b, atol=1e-5, rtol=1e-4)
