"""The small-vocabulary LM head override gives TRL exactly what its own head gives."""

from __future__ import annotations

from pathlib import Path

import torch


def test_plain_lm_head_matches_trl_fused_head(tiny_model: Path) -> None:
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from ecd.trl_patch import plain_lm_head

    torch.manual_seed(0)
    ids = torch.randint(5, 700, (3, 17))
    labels = ids.clone()
    labels[0, :5] = -100
    outputs = ("log_probs", "entropy", "mean_logits", "is_top1", "log_sum_sq_probs")
    results = []
    for patch in (add_fused_lm_head, plain_lm_head):
        model = AutoModelForCausalLM.from_pretrained(tiny_model)
        patch(model, outputs=outputs)
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels, fused_lm_head=True)
        out.loss.backward()
        grad = model.get_output_embeddings().weight.grad.clone()
        results.append((out, grad))
    (a, ga), (b, gb) = results
    for field in ("loss", *outputs):
        assert torch.allclose(getattr(a, field).float(), getattr(b, field).float(), atol=1e-4), field
    assert torch.allclose(ga, gb, atol=1e-5)


def _pairs(n: int = 24) -> list[dict]:
    from ecd import constraints as C
    from ecd.params import SeedParams
    from ecd.seeds import load_seeds

    rows = []
    for s in load_seeds(SeedParams(limit=n)):
        lower = C.apply_rewrites(s["reference"], [C.Constraint("change_case:english_lowercase", {})])
        rows.append({"prompt": [{"role": "user", "content": s["text"][:200] + " Answer in lowercase."}],
                     "chosen": [{"role": "assistant", "content": (lower or "ok")[:200]}],
                     "rejected": [{"role": "assistant", "content": s["reference"][:200]}], "difficulty": 1.0})
    return rows


def _params(**dpo):
    from ecd.params import validate_params

    return validate_params({"train": {"max_length": 256, "sft": {"steps": 2, "batch_size": 4, "warmup_steps": 0},
                                      "dpo": {"batch_size": 4, **dpo}}}).train


def test_loss_names_match_trl() -> None:
    """Our list of DPO loss names is exactly the set TRL's loss code handles (checked in its source)."""
    import inspect
    import re

    from trl.trainer.dpo_trainer import DPOTrainer

    from ecd.params import DPO_LOSS_TYPES

    src = inspect.getsource(DPOTrainer._compute_loss)
    assert set(re.findall(r'loss_type == "(\w+)"', src)) == set(DPO_LOSS_TYPES)


import pytest  # noqa: E402


@pytest.mark.parametrize("loss", [["sigmoid"], ["sigmoid", "sft"], ["hinge"], ["hinge", "sft"], ["ipo"]])
def test_every_offered_loss_trains_with_trl(loss, tiny_model: Path, tmp_path: Path) -> None:
    from ecd.training import train_dpo
    from ecd.trl_patch import use_plain_lm_head_for_small_vocab

    use_plain_lm_head_for_small_vocab()
    params = _params(loss_type=loss, loss_weights=[1.0] * len(loss))
    curve = train_dpo(tiny_model, _pairs()[:8], params, tmp_path / "out", tmp_path / "work")
    assert len(curve) == 2 and all(torch.isfinite(torch.tensor(e["loss"])) for e in curve)
    for key in ("rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected"):
        assert key in curve[-1]  # per step, into the DVC plots
    assert (tmp_path / "out" / "model.safetensors").exists()


def test_lora_uses_the_adapter_disabled_base_as_reference(tiny_model: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from ecd.params import LoraParams
    from ecd.training import _train_and_save, build_dpo_trainer, check_lora_targets

    params = _params().model_copy(update={"lora": LoraParams(enabled=True, r=4, target_modules=["q_proj", "v_proj"])})
    trainer = build_dpo_trainer(tiny_model, _pairs()[:8], params, tmp_path / "work")
    assert trainer.ref_model is None and isinstance(trainer.model, PeftModel)
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    _train_and_save(trainer, trainer.processing_class, tmp_path / "out")
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "out")  # saved merged: a plain model
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    check_lora_targets(base, params.lora)


def test_bad_lora_target_names_the_valid_ones(tiny_model: Path) -> None:
    from transformers import AutoModelForCausalLM

    from ecd.errors import EcdError
    from ecd.params import LoraParams
    from ecd.training import check_lora_targets

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    with pytest.raises(EcdError) as info:
        check_lora_targets(model, LoraParams(enabled=True, target_modules=["q_proj", "query_key_value"]))
    msg = str(info.value)
    assert "'query_key_value' not in the model" in msg
    assert "valid: down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj" in msg


def test_length_batches_are_similar_and_the_curriculum_goes_easy_to_hard() -> None:
    from ecd.training import length_batched

    rows = [{"i": i} for i in range(64)]
    lengths = [(i * 37) % 64 for i in range(64)]
    out = length_batched(rows, lengths, 8, 64, seed=0)
    assert sorted(r["i"] for r in out) == list(range(64))
    spans = [max(lengths[r["i"]] for r in out[k:k + 8]) - min(lengths[r["i"]] for r in out[k:k + 8]) for k in range(0, 64, 8)]
    assert max(spans) <= 8  # one batch holds neighbours in length
    assert out != length_batched(rows, lengths, 8, 64, seed=1) and out == length_batched(rows, lengths, 8, 64, seed=0)
    levels = [float(i % 4) for i in range(64)]
    cur = length_batched(rows, lengths, 8, 64, seed=0, levels=levels)
    seen = [levels[r["i"]] for r in cur]
    assert seen == sorted(seen)
    assert len(length_batched(rows, lengths, 8, 150, seed=0)) == 150  # more than an epoch: epochs drawn anew


def test_a_curriculum_under_a_budget_reorders_the_same_rows_it_does_not_pick_the_easiest() -> None:
    """``max_pairs`` shorter than an epoch: the curriculum trains on the rows the plain order would
    (then easy to hard), so that a curriculum experiment differs from its baseline in order alone."""
    from ecd.training import length_batched

    rows = [{"i": i} for i in range(64)]
    lengths = [(i * 37) % 64 for i in range(64)]
    levels = [float(i % 4) for i in range(64)]
    plain = length_batched(rows, lengths, 8, 24, seed=0)
    cur = length_batched(rows, lengths, 8, 24, seed=0, levels=levels)
    assert sorted(r["i"] for r in cur) == sorted(r["i"] for r in plain)
    seen = [levels[r["i"]] for r in cur]
    assert seen == sorted(seen) and len(set(seen)) > 1  # ordered easy to hard, over more than one level
    # over two epochs, each epoch's rows are the plain order's, each epoch easy to hard again
    cur2, plain2 = length_batched(rows, lengths, 8, 100, 0, levels), length_batched(rows, lengths, 8, 100, 0)
    for start in (0, 64):
        assert sorted(r["i"] for r in cur2[start:start + 64]) == sorted(r["i"] for r in plain2[start:start + 64])
        part = [levels[r["i"]] for r in cur2[start:start + 64]]
        assert part == sorted(part)


@pytest.mark.slow
def test_train_stage_under_accelerate_with_two_cpu_processes(tmp_path: Path) -> None:
    """`accelerate launch` runs the train stage data-parallel on two CPU processes (gloo)."""
    import json
    import math

    from conftest import make_project
    from test_pipeline import SMALL

    proj = make_project(tmp_path / "proj", SMALL)
    proj.commit("small")
    proj.run("dvc", "repro", "pair", "student")
    launch = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no"]
    for stage in (["stages/sft.py"], ["stages/train.py", "preference"]):
        out = proj.run(*launch, *stage).stdout
        assert "process 0 of 2 (gloo)" in out and "process 1 of 2 (gloo)" in out
    one = json.loads((proj.path / "metrics/preference.json").read_text())
    assert one["pairs"] > 0
    # each row once over both processes: a step takes a per-process batch on each, so half the steps
    rows = math.ceil(one["pairs"] * 0.2)
    assert one["steps"] == math.ceil(rows / (8 * 2))
    for name in ("sft", "preference"):
        assert (proj.path / "models" / name / "model.safetensors").exists()
    # dvclive is written by process zero alone: one summary, each step once
    summary = json.loads((proj.path / "dvclive/preference/metrics.json").read_text())
    lines = (proj.path / "dvclive/preference/plots/metrics/loss.tsv").read_text().splitlines()
    assert summary["step"] == one["steps"] and len(lines) == one["steps"] + 1


def test_the_trl_override_matches_the_trl_it_was_written_for() -> None:
    """ecd.trl_patch replaces a private function of TRL: if TRL changes under it, this fails loudly so
    that the override is re-checked (and until then it stands aside, see the next assertion)."""
    import inspect
    import warnings

    import trl
    import trl.trainer.dpo_trainer as dpo
    import trl.trainer.sft_trainer as sft
    from trl.trainer.utils import add_fused_lm_head

    from ecd import trl_patch

    assert trl.__version__ == trl_patch.WRITTEN_FOR, (
        f"TRL is {trl.__version__}; ecd/trl_patch.py was written for {trl_patch.WRITTEN_FOR}: re-check plain_lm_head "
        "against TRL's add_fused_lm_head (tests/test_training.py::test_plain_lm_head_matches_trl_fused_head), then "
        "update WRITTEN_FOR")
    assert hasattr(sft, "add_fused_lm_head") and hasattr(dpo, "add_fused_lm_head")
    ours = inspect.signature(trl_patch.plain_lm_head).parameters
    theirs = inspect.signature(add_fused_lm_head).parameters
    assert list(ours) == list(theirs), f"TRL's add_fused_lm_head takes {list(theirs)}, ours {list(ours)}"
    real = trl.__version__
    try:
        trl.__version__ = "0.0.0"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert trl_patch.use_plain_lm_head_for_small_vocab() is False
        assert any("written for TRL" in str(w.message) for w in caught)
    finally:
        trl.__version__ = real


def test_a_tracker_that_is_not_installed_is_named_with_its_extra() -> None:
    """``train.report_to`` adds transformers' own trackers; each is an extra, checked before training."""
    import importlib.util

    from ecd.errors import EcdError
    from ecd.params import TrainParams
    from ecd.tracking import TRACKERS, report_to

    assert report_to([]) == ["none"]
    missing = [t for t, (module, _) in TRACKERS.items() if importlib.util.find_spec(module) is None]
    for name in missing:
        with pytest.raises(EcdError, match=rf"report_to lists {name}.*pip install 'ecd\[{name}\]'"):
            report_to([name])
    with pytest.raises(ValueError, match="report_to"):
        TrainParams(report_to=["dvclive"])  # dvclive logs every run: it is not a choice
