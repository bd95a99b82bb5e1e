"""A CPU speed-up for TRL's trainers: full logits instead of TRL's chunked LM head for small vocabularies.

This overrides a private detail of TRL (the ``add_fused_lm_head`` that ``trl.trainer.sft_trainer``
and ``trl.trainer.dpo_trainer`` import) and was written against TRL ``WRITTEN_FOR``. On another TRL
version it stands aside (TRL's own head is used, with a warning), and ``tests/test_trl_patch.py``
fails loudly, so that whoever bumps TRL re-checks the override before turning it back on.
"""

from __future__ import annotations

import warnings
from typing import Any

#: the TRL release this override was written for and tested against (outputs identical to TRL's head)
WRITTEN_FOR = "1.16.0"

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
        with torch.no_grad():  # metrics only: TRL's trainers detach them, so no graph is kept for them
            entropy = -(logp.exp() * logp).sum(-1).masked_fill(~mask, 0.0) if "entropy" in outputs else None
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


def use_plain_lm_head_for_small_vocab() -> bool:
    """Route TRL's SFT and DPO trainers through ``plain_lm_head`` for small vocabularies; returns
    whether it did (False, with a warning, on a TRL other than ``WRITTEN_FOR``)."""
    import trl
    import trl.trainer.dpo_trainer as dpo
    import trl.trainer.sft_trainer as sft
    from trl.trainer.utils import add_fused_lm_head

    if trl.__version__ != WRITTEN_FOR or not all(hasattr(m, "add_fused_lm_head") for m in (sft, dpo)):
        warnings.warn(f"ecd's small-vocabulary LM head was written for TRL {WRITTEN_FOR}, not {trl.__version__}: "
                      "using TRL's own head (slower on a CPU, same results)", stacklevel=2)
        return False
    for mod in (sft, dpo):
        mod.add_fused_lm_head = _small_vocab_lm_head(add_fused_lm_head)
    return True


