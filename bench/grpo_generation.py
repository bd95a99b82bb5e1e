"""GRPO's sampling inside training, two ways side by side: ecd's packed decode loop (through TRL's
``rollout_func``) and TRL's own ``generate``, on the same instructions, model and settings.

Prints, for each: the wall time of the steps, the share of it spent sampling, the completion tokens
sampled and their rate. Run after ``dvc repro`` (it reads ``data/pairs`` and starts from ``models/sft``):

    python bench/grpo_generation.py [--prompts 64] [--model models/sft] [--lora]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ecd import layout  # noqa: E402
from ecd.grpo import build_grpo_trainer, grpo_rows  # noqa: E402
from ecd.pairs import load_pairs  # noqa: E402
from ecd.params import load_params  # noqa: E402
from ecd.training import fits, prepare_training  # noqa: E402


def run(generator: str, model: Path, rows: list, params, work: Path) -> dict:
    import os

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    train = params.train.model_copy(update={"grpo": params.train.grpo.model_copy(update={"generator": generator})})
    trainer = build_grpo_trainer(model, rows, train, work / generator)
    sampling = {"seconds": 0.0, "tokens": 0}
    inner = trainer._generate

    def timed(prompts):  # TRL's one entry point for sampling, whichever generator runs behind it
        start = time.perf_counter()
        out = inner(prompts)
        sampling["seconds"] += time.perf_counter() - start
        sampling["tokens"] += sum(len(ids) for ids in out[1])
        return out

    trainer._generate = timed
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    start = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - start
    return {"generator": generator, "steps": trainer.state.global_step, "seconds": total,
            "sampling_seconds": sampling["seconds"], "tokens": sampling["tokens"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=64, help="instructions (the first of the preference run's order)")
    ap.add_argument("--model", type=Path, default=layout.MODELS / "sft")
    ap.add_argument("--lora", action="store_true", help="train LoRA adapters (train.lora's settings, enabled)")
    args = ap.parse_args()
    params = load_params()
    if args.lora:
        train = params.train.model_copy(update={"lora": params.train.lora.model_copy(update={"enabled": True})})
        params = params.model_copy(update={"train": train})
    tok = prepare_training(params.train, args.model)
    pairs = [r for r in load_pairs(layout.PAIRS, "train").to_list() if fits(tok, r, params.train.max_length)]
    rows = grpo_rows(pairs, args.prompts)
    print(f"{len(rows)} instructions, {params.train.grpo.num_generations} answers each, "
          f"{params.train.grpo.prompts_per_step} instructions a step, model {args.model}")
    with tempfile.TemporaryDirectory() as work:
        results = [run(g, args.model, rows, params, Path(work)) for g in ("ecd", "trl")]
    print(f"{'generator':10} {'steps':>5} {'wall s':>8} {'sampling s':>11} {'share':>6} {'tokens':>7} {'tok/s':>7}")
    for r in results:
        print(f"{r['generator']:10} {r['steps']:>5} {r['seconds']:>8.1f} {r['sampling_seconds']:>11.1f} "
              f"{r['sampling_seconds'] / r['seconds']:>6.0%} {r['tokens']:>7} {r['tokens'] / r['sampling_seconds']:>7.0f}")
    ecd, trl = results
    print(f"sampling: ecd {trl['sampling_seconds'] / ecd['sampling_seconds']:.2f}x faster than TRL's generate; "
          f"whole run {trl['seconds'] / ecd['seconds']:.2f}x")


if __name__ == "__main__":
    main()
