"""Training the student: SFT on the chosen answers, then preference training with TRL's DPOTrainer.

``train.dpo.loss_type`` takes TRL's own loss names; a list is summed with ``loss_weights``, so
``["sigmoid", "sft"]`` is RPO (DPO plus an NLL term on the chosen answer, the default: plain DPO on
near-identical hard negatives is unstable for a tiny student) and ``["hinge"]`` is SLiC.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any

from ecd.params import TrainParams

def _precision() -> dict[str, Any]:
    import torch

    if torch.cuda.is_available():
        return {"use_cpu": False, "bf16": torch.cuda.is_bf16_supported(), "fp16": False}
    return {"use_cpu": True, "bf16": False, "fp16": False}


def _common(params: TrainParams, out: Path, total_steps: int) -> dict[str, Any]:
    return dict(
        output_dir=str(out),
        report_to="none",
        save_strategy="no",
        # about ten points on a short run's curve, one every ten steps on a long one
        logging_steps=max(1, min(10, total_steps // 10)),
        seed=params.seed,
        data_seed=params.seed,
        max_length=params.max_length,
        activation_checkpointing=False,
        disable_tqdm=True,
        dataloader_num_workers=0,
        **_precision(),
    )


def n_tokens(tok: Any, messages: list[dict[str, str]]) -> int:
    text = tok.apply_chat_template(messages, tokenize=False)
    return len(tok(text, add_special_tokens=False)["input_ids"])


def fits(tok: Any, row: dict[str, Any], max_length: int) -> bool:
    """Whether the prompt with each answer fits in ``max_length`` tokens."""
    answers = [row["chosen"]] + ([row["rejected"]] if row.get("rejected") else [])
    return all(n_tokens(tok, row["prompt"] + a) <= max_length for a in answers)


#: vocabularies up to this size get full logits instead of TRL's chunked LM head (see ``plain_lm_head``)
PLAIN_LM_HEAD_MAX_VOCAB = 32768


def plain_lm_head(model: Any, temperature: float = 1.0, cast_lm_head_to_fp32: bool = False,
                  outputs: tuple[str, ...] = ("log_probs",)) -> None:
    """A drop-in for TRL's ``add_fused_lm_head`` that materialises the logits.

    TRL 1.16 scores tokens through a chunked LM-head kernel that avoids the ``(batch, seq, vocab)``
    logits tensor. That pays off for 100k-token vocabularies on a GPU; for a tiny student on a CPU it
    is most of the step time (the kernel's torch fallback tiles over 4096 tokens and scores padding).
    This version computes the same per-token fields (log-probs, entropy, mean logits, top-1, log sum
    of squared probs) from full logits with one ``log_softmax``. It keeps TRL's calling convention,
    so the trainers are otherwise untouched. Models with logit scaling or soft-capping keep TRL's head.
    """
    import functools
    import types

    import torch
    from trl.trainer.utils import FusedCausalLMOutput

    original_forward = model.forward

    @functools.wraps(type(model).forward)
    def forward(self, *args, fused_lm_head=False, labels=None, shift_labels=None, num_items_in_batch=None, **kwargs):
        if not fused_lm_head:
            for name, value in (("labels", labels), ("shift_labels", shift_labels),
                                ("num_items_in_batch", num_items_in_batch)):
                if value is not None:
                    kwargs[name] = value
            return original_forward(*args, **kwargs)
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state
        if shift_labels is None:
            hidden, labels = hidden[:, :-1], labels[:, 1:]
        else:
            labels = shift_labels
        head = self.get_output_embeddings()
        if cast_lm_head_to_fp32:
            hidden = hidden.float()
        logits = head(hidden.to(head.weight.device)).float() / temperature
        labels = labels.to(logits.device)
        mask = labels != -100
        logp = logits.log_softmax(-1)
        log_probs = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1).masked_fill(~mask, 0.0)
        entropy = -(logp.exp() * logp).sum(-1).masked_fill(~mask, 0.0) if "entropy" in outputs else None
        with torch.no_grad():
            mean_logits = logits.mean(-1).masked_fill(~mask, 0.0) if "mean_logits" in outputs else None
            is_top1 = (logits.argmax(-1) == labels) & mask if "is_top1" in outputs else None
            lssp = torch.logsumexp(2 * logp, -1).masked_fill(~mask, 0.0) if "log_sum_sq_probs" in outputs else None
        denom = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        return FusedCausalLMOutput(
            loss=-log_probs.sum() / denom, log_probs=log_probs, entropy=entropy, log_sum_sq_probs=lssp,
            mean_logits=mean_logits, is_top1=is_top1, label_mask=mask,
        )

    model.forward = types.MethodType(forward, model)


def _small_vocab_lm_head(trl_version: Any) -> Any:
    def choose(model: Any, *args: Any, **kwargs: Any) -> None:
        cfg = model.config.get_text_config()
        plain = (
            cfg.vocab_size <= PLAIN_LM_HEAD_MAX_VOCAB
            and getattr(cfg, "final_logit_softcapping", None) is None
            and getattr(cfg, "logit_scale", None) is None
        )
        (plain_lm_head if plain else trl_version)(model, *args, **kwargs)

    return choose


def use_plain_lm_head_for_small_vocab() -> None:
    """Route TRL's SFT and DPO trainers through ``plain_lm_head`` for small vocabularies."""
    import trl.trainer.dpo_trainer as dpo
    import trl.trainer.sft_trainer as sft
    from trl.trainer.utils import add_fused_lm_head

    for mod in (sft, dpo):
        mod.add_fused_lm_head = _small_vocab_lm_head(add_fused_lm_head)


def _callbacks() -> list[Any]:
    from ecd.progress import trainer_progress

    return [trainer_progress()]


def _train_and_save(trainer: Any, tok: Any, out_dir: Path) -> list[dict[str, Any]]:
    """Train, save model and tokenizer atomically, return the logged curve."""
    from transformers.trainer_callback import PrinterCallback

    from ecd.records import atomic_path

    trainer.remove_callback(PrinterCallback)  # our bar shows the loss; this would print every log dict
    trainer.train()
    trainer.model.config.use_cache = True  # TRL saves use_cache=False; generation wants the KV cache
    with atomic_path(out_dir) as tmp:
        trainer.save_model(str(tmp))
        tok.save_pretrained(tmp)
    return _curve(trainer.state.log_history)


def _curve(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if isinstance(v, (int, float))} for e in log_history if "loss" in e]


def train_sft(model_dir: Path, rows: list[dict[str, Any]], params: TrainParams, out_dir: Path, work: Path):
    """SFT on (prompt, chosen) with loss on the completion only; returns the training curve."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tok = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    ds = Dataset.from_list([{"prompt": r["prompt"], "completion": r["chosen"]} for r in rows])
    s = params.sft
    cfg = SFTConfig(
        max_steps=s.steps,
        learning_rate=s.learning_rate,
        per_device_train_batch_size=s.batch_size,
        lr_scheduler_type=s.lr_scheduler,
        warmup_steps=s.warmup_steps,
        **_common(params, work / "sft", s.steps),
    )
    trainer = SFTTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok, callbacks=_callbacks())
    return _train_and_save(trainer, tok, out_dir)


def train_dpo(model_dir: Path, rows: list[dict[str, Any]], params: TrainParams, out_dir: Path, work: Path):
    """Preference training from ``model_dir``; the frozen reference is a copy of the starting model."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    tok = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    ref = AutoModelForCausalLM.from_pretrained(model_dir)
    ds = Dataset.from_list([{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows])
    d = params.dpo
    cfg = DPOConfig(
        num_train_epochs=d.epochs,
        learning_rate=d.learning_rate,
        per_device_train_batch_size=d.batch_size,
        beta=d.beta,
        loss_type=list(d.loss_type),
        loss_weights=list(d.loss_weights) if d.loss_weights else None,
        lr_scheduler_type="constant",
        **_common(params, work / "dpo", math.ceil(len(rows) / d.batch_size * d.epochs)),
    )
    trainer = DPOTrainer(
        model=model, ref_model=ref, args=cfg, train_dataset=ds, processing_class=tok, callbacks=_callbacks()
    )
    return _train_and_save(trainer, tok, out_dir)


def quiet_training_logs() -> None:
    """Keep the training stage's output to the progress bar and our own summary lines."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    import datasets

    datasets.disable_progress_bars()
