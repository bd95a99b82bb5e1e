"""Our TRL train step against a plain PyTorch loop on the same model and the same batches.

    python bench/train_step.py [--steps 30] [--pairs data/pairs] [--model models/base]

For SFT and for RPO (DPO + NLL on the chosen answer) it builds the trainer exactly as the train stage
does (``ecd.training``), then runs (1) ``trainer.train()`` for ``--steps`` steps and (2) a plain loop
(forward, loss, backward, AdamW step) over the batches of the same trainer's dataloader, on a fresh
copy of the same model. Both times include collation. The first 3 steps of each are warm-up and not
counted. It prints seconds per step for both and their ratio, the figure the train stage answers for
(target: at most 1.3). ``--trl-head`` also times TRL's own chunked LM head, for the record.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

WARMUP = 3


class StepClock:
    """A trainer callback that records the wall time of every step (data loading included)."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        clock = self

        class _CB(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
                clock.marks.append(time.perf_counter())

            def on_train_begin(self, args, state, control, **kw):  # noqa: ANN001
                clock.marks.append(time.perf_counter())

        self.marks: list[float] = []
        self.callback = _CB()

    def per_step(self) -> float:
        m = self.marks[WARMUP:]
        return (m[-1] - m[0]) / (len(m) - 1)


def plain_loop(model, batches, lr: float, step_fn) -> float:  # noqa: ANN001
    """Seconds per step of forward + loss + backward + AdamW over ``batches``."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    marks = []
    it = iter(batches)
    marks.append(time.perf_counter())
    for batch in it:
        loss = step_fn(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        marks.append(time.perf_counter())
    m = marks[WARMUP:]
    return (m[-1] - m[0]) / (len(m) - 1)


def token_logps(model, input_ids, attention_mask, mask):  # noqa: ANN001
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()
    labels = input_ids[:, 1:]
    lp = logits.log_softmax(-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    m = mask[:, 1:].bool()
    return (lp * m).sum(-1), m.sum(-1)


def sft_step(model, b):  # noqa: ANN001
    lp, n = token_logps(model, b["input_ids"], b.get("attention_mask"), b["labels"] != -100)
    return -lp.sum() / n.sum()


def make_rpo_step(ref, beta: float):  # noqa: ANN001
    import torch
    import torch.nn.functional as F

    def step(model, b):  # noqa: ANN001
        mask = b["completion_mask"]
        lp, n = token_logps(model, b["input_ids"], b["attention_mask"], mask)
        with torch.no_grad():
            ref_lp, _ = token_logps(ref, b["input_ids"], b["attention_mask"], mask)
        half = lp.shape[0] // 2
        logits = beta * ((lp[:half] - ref_lp[:half]) - (lp[half:] - ref_lp[half:]))
        nll = -lp[:half].sum() / n[:half].sum()
        return -F.logsigmoid(logits).mean() + nll

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--pairs", default=str(ROOT / "data/pairs"))
    ap.add_argument("--model", default=str(ROOT / "models/base"))
    ap.add_argument("--trl-head", action="store_true", help="also time TRL's chunked LM head")
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ecd.pairs import load_pairs
    from ecd.params import load_params
    from ecd.training import build_dpo_trainer, build_sft_trainer, fits, preference_order, quiet_training_logs
    from ecd.trl_patch import use_plain_lm_head_for_small_vocab

    quiet_training_logs()
    torch.manual_seed(0)
    params = load_params(ROOT / "params.yaml").train
    pairs = load_pairs(args.pairs, "train").to_list()
    tok = AutoTokenizer.from_pretrained(args.model)
    # the same length batches as the train stage
    rows = preference_order(tok, [r for r in pairs if fits(tok, r, params.max_length)], params, curriculum=False)
    bs = params.sft.batch_size
    model_dir = Path(args.model)
    work = Path("/tmp/ecd-bench-train")
    n = args.steps
    print(f"torch threads {torch.get_num_threads()}, {n} steps ({WARMUP} warm-up), model {model_dir}")

    results = []
    for kind in ("sft", "rpo"):
        heads = ["plain"] + (["trl"] if args.trl_head else [])
        for head in heads:
            if head == "plain":
                use_plain_lm_head_for_small_vocab()
            else:
                import importlib

                import trl.trainer.dpo_trainer as d
                import trl.trainer.sft_trainer as s
                importlib.reload(s), importlib.reload(d)  # undo the override
            clock = StepClock()
            if kind == "sft":
                trainer = build_sft_trainer(model_dir, rows[: n * bs], params, work, callbacks=[clock.callback])
            else:
                # the reference scores every step on both sides (no precomputing), so the steps compare like for like
                p = params.model_copy(update={"dpo": params.dpo.model_copy(update={"precompute_ref_log_probs": False})})
                trainer = build_dpo_trainer(model_dir, rows[: n * bs], p, work, callbacks=[clock.callback])
            from transformers.trainer_callback import PrinterCallback

            trainer.remove_callback(PrinterCallback)
            trainer.train()
            t_trl = clock.per_step()
            batches = list(trainer.get_train_dataloader())[:n]
            fresh = AutoModelForCausalLM.from_pretrained(model_dir)
            if kind == "sft":
                t_plain = plain_loop(fresh, batches, params.sft.learning_rate, sft_step)
            else:
                ref = AutoModelForCausalLM.from_pretrained(model_dir).eval()
                t_plain = plain_loop(fresh, batches, params.dpo.learning_rate, make_rpo_step(ref, params.dpo.beta))
            results.append((kind, head, t_trl, t_plain))
            print(f"{kind:4s} head={head:5s}  TRL {t_trl:.3f} s/step  plain PyTorch {t_plain:.3f} s/step  "
                  f"ratio {t_trl / t_plain:.2f}")


if __name__ == "__main__":
    main()
