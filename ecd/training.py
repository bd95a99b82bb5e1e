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
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from ecd.params import LoraParams, TrainParams
from ecd.records import content_id
from ecd.schema import SFTRow, State, Step, assistant, user

#: a training row: an SFT row or a pair (``ecd.schema``), ordered without being changed
Row = TypeVar("Row", bound=Mapping[str, Any])


def _precision() -> dict[str, Any]:
    import torch

    if torch.cuda.is_available():
        return {"use_cpu": False, "bf16": torch.cuda.is_bf16_supported(), "fp16": False}
    return {"use_cpu": True, "bf16": False, "fp16": False}


def trainer_args(params: TrainParams, out: Path) -> dict[str, Any]:
    """The arguments every trainer here shares: each step logged (dvclive's curves, through our own
    callback), the other trackers of ``train.report_to``, seeds from ``train.seed``, the machine's
    precision, no checkpoints (DVC keeps the model)."""
    from ecd.tracking import report_to

    return dict(
        output_dir=str(out),
        report_to=report_to(params.report_to),
        save_strategy="no",
        logging_steps=1,  # every step's loss, reward accuracy, margin and log-probs go to the DVC plots
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


def length_batched(rows: list[Row], lengths: list[int], batch_size: int, n_rows: int, seed: int,
                   levels: list[float] | None = None) -> list[Row]:
    """``n_rows`` rows in training order: batches of similar length, in shuffled order, epoch after
    epoch (each epoch drawn anew from ``seed``).

    Random batches of the pairs pad to almost three times their real tokens (measured on the
    default data: 8,150 padded against 2,940 real tokens per batch of 16), and on a CPU the step
    time follows the padded size; length-sorted batches in random order keep the randomness across
    batches and drop most of the padding.

    With ``levels`` (the curriculum's difficulty per row) each epoch's rows are the same ones as
    without it, put in a different order: batched within each level, the levels easy to hard. So a
    budget shorter than an epoch (``max_pairs``) trains on the same rows with and without the
    curriculum, not on the easiest rows alone, and the curriculum is compared on order only.
    """
    import random as _random

    def batches_of(idx: list[int], key: Any) -> list[list[int]]:
        keyed = sorted(idx, key=key)
        return [keyed[start:start + batch_size] for start in range(0, len(keyed), batch_size)]

    out: list[Row] = []
    epoch = 0
    while len(out) < n_rows:
        rng = _random.Random(seed * 1_000_003 + epoch)
        idx = list(range(len(rows)))
        rng.shuffle(idx)  # random order among equal lengths
        batches = batches_of(idx, lambda i: lengths[i])
        rng.shuffle(batches)
        take = [i for b in batches for i in b][:n_rows - len(out)]
        if levels:
            by_level: dict[float, list[list[int]]] = {}
            for b in batches_of(take, lambda i: (levels[i], lengths[i])):
                by_level.setdefault(levels[b[0]], []).append(b)
            take = []
            for level in sorted(by_level):
                rng.shuffle(by_level[level])
                take += [i for b in by_level[level] for i in b]
        out.extend(rows[i] for i in take)
        epoch += 1
    return out


def pair_length(tok: Any, row: Mapping[str, Any]) -> int:
    """Tokens of the prompt with its chosen answer: what decides a row's place and whether it is
    kept. Not the rejected side, so that the preference run and its control keep the same rows in
    the same order whatever the negative; a rejected answer past ``max_length`` is cut by TRL."""
    return n_tokens(tok, row["prompt"] + row["chosen"])


def fits(tok: Any, row: Mapping[str, Any], max_length: int) -> bool:
    """Whether the prompt with its chosen answer fits in ``max_length`` tokens."""
    return pair_length(tok, row) <= max_length


def sft_order(tok: Any, rows: list[Row], params: TrainParams) -> list[Row]:
    """SFT's rows in training order: ``sft.steps`` length batches (see ``length_batched``)."""
    return length_batched(rows, [n_tokens(tok, r["prompt"] + r["chosen"]) for r in rows],
                          params.sft.batch_size, params.sft.steps * params.sft.batch_size, params.seed)


def preference_order(tok: Any, rows: list[Row], params: TrainParams, curriculum: bool) -> list[Row]:
    """The pairs in the order preference training and the control read them: ``dpo.epochs`` passes
    of length batches, easy to hard by ``difficulty`` when the curriculum is on."""
    levels = [float(r["difficulty"]) for r in rows] if curriculum else None
    n_rows = math.ceil(len(rows) * params.dpo.epochs)
    if params.dpo.max_pairs:
        n_rows = min(n_rows, params.dpo.max_pairs)
    return length_batched(rows, [pair_length(tok, r) for r in rows], params.dpo.batch_size, n_rows, params.seed, levels)


def _state() -> Any:
    """Accelerate's process state, made as the trainers make it (``cpu`` where there is no GPU, so
    that two CPU processes under a torch.distributed launcher use gloo)."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def is_main_process() -> bool:
    """False in every process but the first under ``accelerate launch``: one process writes."""
    return _state().is_main_process


def prepare_training(params: TrainParams, start: Path) -> Any:
    """Everything a training stage does before any work: quiet logs, the small-vocabulary LM head,
    the starting model checked (it exists; LoRA's targets are in it), the seed set; returns the
    starting model's tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    from ecd.layout import check_model_path
    from ecd.trl_patch import use_plain_lm_head_for_small_vocab

    check_model_path(str(start), "starting model")
    quiet_training_logs()
    use_plain_lm_head_for_small_vocab()
    if params.lora.enabled:
        check_lora_targets(AutoModelForCausalLM.from_pretrained(start), params.lora)
    state = _state()
    if state.num_processes > 1:
        print(f"train: process {state.process_index} of {state.num_processes} ({state.backend})")
    set_seed(params.seed)
    return AutoTokenizer.from_pretrained(start)


def copy_model(src: Path, out_dir: Path) -> None:
    """A model directory copied file by file (same bytes, so the same call-cache identity), atomically."""
    import shutil

    from ecd.layout import check_model_path
    from ecd.records import atomic_path

    check_model_path(str(src), "starting model")
    with atomic_path(out_dir) as tmp:
        shutil.copytree(src, tmp)


def trainer_callbacks(extra: list[Any] | None = None, live: Path | None = None) -> list[Any]:
    """ecd's progress bar (steps and loss), the dvclive curves into ``live`` (a stage's
    ``dvclive/<run>``; None: none), then ``extra``."""
    from ecd.progress import trainer_progress
    from ecd.tracking import LiveCurves

    return [trainer_progress(), *([LiveCurves(live)] if live else []), *(extra or [])]


def _train_and_save(trainer: Any, tok: Any, out_dir: Path) -> list[dict[str, Any]]:
    """Train, save model and tokenizer atomically, return the logged curve."""
    from transformers.trainer_callback import PrinterCallback

    from ecd.records import save_model

    trainer.remove_callback(PrinterCallback)  # our bar shows the loss; this would print every log dict
    trainer.train()
    if trainer.is_world_process_zero():  # under `accelerate launch`, one process writes
        model = trainer.accelerator.unwrap_model(trainer.model)
        if hasattr(model, "merge_and_unload"):  # a LoRA student is saved merged: later stages load a plain model
            model = model.merge_and_unload()
        model.config.use_cache = True  # TRL saves use_cache=False; generation wants the KV cache
        save_model(model, tok, out_dir)
    trainer.accelerator.wait_for_everyone()
    return _curve(trainer.state.log_history)


def _curve(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The steps' numbers as :class:`ecd.tracking.LiveCurves` logs them, each with its step."""
    from ecd.tracking import curve_entry

    return [{**entry, "step": e["step"]} for e in log_history if (entry := curve_entry(e)) is not None]


def load_student(model_dir: Path) -> tuple[Any, Any]:
    """A training stage's starting point: its tokenizer (left-padded) and model, checked to exist first."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ecd.layout import check_model_path

    check_model_path(str(model_dir), "starting model")
    tok = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    return tok, AutoModelForCausalLM.from_pretrained(model_dir)


def linear_module_names(model: Any) -> list[str]:
    """The names LoRA can target in ``model``: the last name part of every Linear layer but the LM head."""
    import torch

    head = model.get_output_embeddings()
    return sorted({n.split(".")[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m is not head})


def check_lora_targets(model: Any, params: LoraParams) -> None:
    """Fail before any work when a LoRA target module is not in the model, naming the valid ones."""
    from ecd.errors import EcdError

    valid = linear_module_names(model)
    wrong = [t for t in params.target_modules if t not in valid]
    if wrong:
        raise EcdError(f"train.lora.target_modules: {', '.join(map(repr, wrong))} not in the model; valid: {', '.join(valid)}")


def peft_config(params: LoraParams) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=params.r, lora_alpha=params.alpha, lora_dropout=params.dropout,
                      target_modules=list(params.target_modules), task_type="CAUSAL_LM")


def verified_answers(r0_state: list[State], steps: list[Step], held_out: set[str]) -> list[SFTRow]:
    """SFT rows: every training seed's answer and every verified answer R(t) of its chains, each
    (instruction, answer) once, sorted by id so that the rows do not depend on file order."""
    rows: dict[str, SFTRow] = {}
    for inst, resp in [(s["instruction"], s["response"]) for s in r0_state] + [(s["instruction"], s["chosen"]) for s in steps]:
        if inst["root_id"] in held_out:
            continue
        prompt, chosen = user(inst["text"]), assistant(resp["text"])
        rows.setdefault(content_id(prompt, chosen), {"prompt": prompt, "chosen": chosen})
    return [rows[k] for k in sorted(rows)]


def sft_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """(prompt, completion) rows from pairs' chosen answers, in the pairs' order."""
    return [{"prompt": r["prompt"], "completion": r["chosen"]} for r in rows]


def build_sft_trainer(model_dir: Path, rows: Sequence[Mapping[str, Any]], params: TrainParams, work: Path,
                      callbacks: list[Any] | None = None, *, learning_rate: float | None = None,
                      scheduler: str | None = None, warmup: int | None = None, batch_size: int | None = None,
                      live: Path | None = None) -> Any:
    """An SFTTrainer that reads ``rows`` (prompt, chosen) once, in order, loss on the completion only.

    The keyword overrides serve the SFT-only control, which continues from the SFT model with the
    preference stage's learning rate, schedule, batch size and rows.
    """
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    tok, model = load_student(model_dir)
    s = params.sft
    bs = batch_size or s.batch_size
    cfg = SFTConfig(
        max_steps=math.ceil(len(rows) / (bs * _state().num_processes)),  # each row once, over every process
        learning_rate=learning_rate or s.learning_rate,
        per_device_train_batch_size=bs,
        lr_scheduler_type=scheduler or s.lr_scheduler,
        warmup_steps=s.warmup_steps if warmup is None else warmup,
        train_sampling_strategy="sequential",  # rows come in training order (``sft_order``, ``preference_order``)
        **trainer_args(params, work / "sft"),
    )
    lora = peft_config(params.lora) if params.lora.enabled else None
    return SFTTrainer(model=model, args=cfg, train_dataset=Dataset.from_list(sft_rows(rows)), processing_class=tok,
                      peft_config=lora, callbacks=trainer_callbacks(callbacks, live))


def build_dpo_trainer(model_dir: Path, rows: list[dict[str, Any]], params: TrainParams, work: Path,
                      callbacks: list[Any] | None = None, live: Path | None = None) -> Any:
    """A DPOTrainer that reads ``rows`` once, in order.

    The reference is a frozen copy of the starting model, or with LoRA the same model with its
    adapter disabled (no second copy in memory). With ``precompute_ref_log_probs`` the reference
    scores every pair once before training instead of once per step.
    """
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    tok, model = load_student(model_dir)
    d = params.dpo
    ds = Dataset.from_list([{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows])
    cfg = DPOConfig(
        max_steps=math.ceil(len(rows) / (d.batch_size * _state().num_processes)),  # each row once, over every process
        learning_rate=d.learning_rate,
        per_device_train_batch_size=d.batch_size,
        beta=d.beta,
        loss_type=list(d.loss_type),
        loss_weights=list(d.loss_weights) if d.loss_weights else None,
        lr_scheduler_type=d.lr_scheduler,
        warmup_steps=d.warmup_steps,
        # TRL 1.16 precomputes into a per-process temporary cache file for in-memory datasets, which
        # the other processes cannot open: several processes score the reference at every step instead
        precompute_ref_log_probs=d.precompute_ref_log_probs and _state().num_processes == 1,
        train_sampling_strategy="sequential",  # rows come in training order (``sft_order``, ``preference_order``)
        **trainer_args(params, work / "preference"),
    )
    if params.lora.enabled:
        return DPOTrainer(model=model, ref_model=None, args=cfg, train_dataset=ds, processing_class=tok,
                          peft_config=peft_config(params.lora), callbacks=trainer_callbacks(callbacks, live))
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(model_dir)
    return DPOTrainer(model=model, ref_model=ref, args=cfg, train_dataset=ds, processing_class=tok,
                      callbacks=trainer_callbacks(callbacks, live))


def train_sft(model_dir: Path, rows: Sequence[Mapping[str, Any]], params: TrainParams, out_dir: Path, work: Path,
              live: Path | None = None) -> list[dict[str, Any]]:
    """SFT on (prompt, chosen) rows in training order, its curves to dvclive in ``live``; returns
    the training curve."""
    trainer = build_sft_trainer(model_dir, rows, params, work, live=live)
    return _train_and_save(trainer, trainer.processing_class, out_dir)


def train_control(model_dir: Path, rows: list[dict[str, Any]], params: TrainParams, out_dir: Path, work: Path,
                  live: Path | None = None) -> list[dict[str, Any]]:
    """The SFT-only control: SFT continued on the chosen side of the preference rows, in the same
    order, steps, batch size, learning rate and schedule as preference training — what the
    preference loss has to beat for the rejected answers to have taught anything."""
    d = params.dpo
    trainer = build_sft_trainer(model_dir, rows, params, work, learning_rate=d.learning_rate,
                                scheduler=d.lr_scheduler, warmup=d.warmup_steps, batch_size=d.batch_size, live=live)
    return _train_and_save(trainer, trainer.processing_class, out_dir)


def train_dpo(model_dir: Path, rows: list[dict[str, Any]], params: TrainParams, out_dir: Path, work: Path,
              live: Path | None = None) -> list[dict[str, Any]]:
    """Preference training from ``model_dir`` on rows in training order; returns the training curve."""
    trainer = build_dpo_trainer(model_dir, rows, params, work, live=live)
    return _train_and_save(trainer, trainer.processing_class, out_dir)


def quiet_training_logs() -> None:
    """Keep the training stage's output to the progress bar and our own summary lines."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # "Loading weights" would draw a tqdm bar into a piped log
    import datasets

    datasets.disable_progress_bars()
