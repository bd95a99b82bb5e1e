"""Online training with GRPO: the student samples, the constraint library scores, TRL's GRPOTrainer updates.

The run is matched to the preference run: it starts from the same SFT student, on the same
instructions (the train pairs' prompts that fit ``train.max_length``, in the preference run's
order), with the same LoRA settings, and is evaluated beside it. Its answers are sampled inside
training either by TRL's own ``generate`` or by ecd's packed decode loop (``generator: ecd``),
handed to TRL through its ``rollout_func``; ``bench/grpo_generation.py`` measures both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ecd.params import GRPOParams, TrainParams
from ecd.records import content_id
from ecd.rewards import REWARD_FUNCTIONS


def grpo_rows(pairs: Sequence[Mapping[str, Any]], limit: int | None = None) -> list[dict[str, Any]]:
    """One row per instruction of the pairs, in their order: the prompt, its constraints, and the
    verified answer it was paired with as the reference (the first pair's, where several share it)."""
    rows: dict[str, dict[str, Any]] = {}
    for r in pairs:
        rows.setdefault(r["instruction_id"], {
            "prompt": list(r["prompt"]),
            "instruction_id_list": list(r["instruction_id_list"]),
            "kwargs": [dict(k) for k in r["kwargs"]],
            "reference": r["chosen"][0]["content"],
        })
    return list(rows.values())[:limit]


class PackedRollout:
    """TRL's ``rollout_func`` over ecd's packed decode loop: each prompt of the step's list is answered
    once (TRL's sampler already repeats every prompt ``num_generations`` times), each from its own
    seeded generator (``seed``, the step and its place in the list), so a run repeats byte for byte.
    It counts the seconds and tokens it sampled, so that a run can say where its time went
    (:func:`train_grpo` records them with the stage's timings, outside DVC's outputs)."""

    def __init__(self, params: GRPOParams, seed: int) -> None:
        self.params, self.seed = params, seed
        self.seconds, self.tokens, self.calls = 0.0, 0, 0

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        import time

        import torch

        from ecd.backends.decode import SeededSampler, as_list
        from ecd.backends.packed_decode import generate_packed

        start = time.perf_counter()
        params = self.params
        model = trainer.accelerator.unwrap_model(trainer.model)
        tok = trainer.processing_class
        texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
        prompt_ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        step = trainer.state.global_step
        seeds = [int(content_id("grpo", self.seed, step, i), 16) % 2**63 for i in range(len(prompts))]
        eos = set(as_list(model.generation_config.eos_token_id)) | {tok.eos_token_id}
        training = model.training
        model.eval()
        try:
            with torch.no_grad():
                done = generate_packed(model, prompt_ids, max_new_tokens=params.max_completion_length, eos_ids=eos,
                                       width=len(prompts), cache_tokens=sum(map(len, prompt_ids)) + len(prompts)
                                       * params.max_completion_length, pick=SeededSampler(seeds, params.temperature, 1.0).pick)
        finally:
            model.train(training)
        # TRL's own path keeps the end-of-sequence token in the completion (its loss learns to stop)
        completion_ids = [g.tokens + ([g.stop_token] if g.stop_token is not None else []) for g in done]
        self.seconds += time.perf_counter() - start
        self.tokens += sum(map(len, completion_ids))
        self.calls += 1
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}


def packed_rollout(params: GRPOParams, seed: int) -> PackedRollout:
    """ecd's packed loop as GRPO's sampler (:class:`PackedRollout`)."""
    return PackedRollout(params, seed)


def build_grpo_trainer(model_dir: Path, rows: list[dict[str, Any]], params: TrainParams, work: Path,
                       callbacks: list[Any] | None = None, live: Path | None = None) -> Any:
    """A GRPOTrainer over ``rows`` (``grpo_rows``), in order, rewarded by ``train.grpo.reward_weights``."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from ecd.backends.packed_decode import supports_packed
    from ecd.training import load_student, peft_config, trainer_args, trainer_callbacks

    g = params.grpo
    tok, model = load_student(model_dir)
    names = list(g.reward_weights)
    common = trainer_args(params, work / "grpo")
    common.pop("max_length")
    if g.generator == "vllm":
        _check_vllm()
        common.update(use_vllm=True, vllm_mode="colocate")
    answers = g.prompts_per_step * g.num_generations
    micro = g.micro_batch or answers
    cfg = GRPOConfig(
        max_steps=math.ceil(len(rows) * g.epochs / g.prompts_per_step),
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=answers // micro,  # one sampling and one optimizer step per step's answers
        num_generations=g.num_generations,
        max_completion_length=g.max_completion_length,
        temperature=g.temperature,
        learning_rate=g.learning_rate,
        lr_scheduler_type=g.lr_scheduler,
        warmup_steps=g.warmup_steps,
        beta=g.beta,
        loss_type=g.loss_type,
        reward_weights=[g.reward_weights[n] for n in names],
        shuffle_dataset=False,  # the preference run's order
        **common,
    )
    rollout = None
    if g.generator == "ecd":
        if not supports_packed(model):
            from ecd.errors import EcdError

            raise EcdError(f"train.grpo.generator: ecd's packed loop cannot run {model.config.model_type} models "
                           "exactly; set generator: trl")
        rollout = packed_rollout(g, params.seed)
    ds = Dataset.from_list(rows)
    return GRPOTrainer(model=model, reward_funcs=[REWARD_FUNCTIONS[n] for n in names], args=cfg, train_dataset=ds,
                       processing_class=tok, rollout_func=rollout, callbacks=trainer_callbacks(callbacks, live),
                       peft_config=peft_config(params.lora) if params.lora.enabled else None)


def _check_vllm() -> None:
    """TRL's vLLM path runs the engine beside training on the GPU: refuse clearly where it cannot."""
    import importlib.util

    import torch

    from ecd.errors import EcdError

    missing = [what for what, ok in (("a CUDA GPU", torch.cuda.is_available()),
                                     ("the vllm package (pip install 'ecd[vllm]')", importlib.util.find_spec("vllm") is not None))
               if not ok]
    if missing:
        raise EcdError(f"train.grpo.generator: vllm needs {' and '.join(missing)}; on a CPU use generator: ecd")


def train_grpo(model_dir: Path, rows: list[dict[str, Any]], params: TrainParams, out_dir: Path, work: Path,
               live: Path | None = None) -> list[dict[str, Any]]:
    """GRPO from ``model_dir`` on ``rows``; returns the training curve (loss, each reward's mean, ...)."""
    import os

    from ecd.training import _train_and_save

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is marked experimental in TRL 1.16
    import time

    trainer = build_grpo_trainer(model_dir, rows, params, work, live=live)
    start = time.perf_counter()
    curve = _train_and_save(trainer, trainer.processing_class, out_dir)
    rollout = getattr(trainer, "rollout_func", None)
    if isinstance(rollout, PackedRollout) and rollout.calls:
        from ecd.progress import console
        from ecd.stage import record_time

        total = time.perf_counter() - start
        record_time("train grpo: sampling", rollout.seconds)
        console.print(f"grpo: sampling took {rollout.seconds:.0f} s of {total:.0f} s ({rollout.tokens:,} answer tokens, "
                      f"{rollout.tokens / max(rollout.seconds, 1e-9):.0f} a second); the rest is scoring and training")
    return curve
