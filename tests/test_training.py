"""The small-vocabulary LM head override gives TRL exactly what its own head gives."""

from __future__ import annotations

from pathlib import Path

import torch


def test_plain_lm_head_matches_trl_fused_head(tiny_model: Path) -> None:
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from ecd.training import plain_lm_head

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
