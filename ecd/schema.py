"""The records of the pipeline, declared once: what every stage reads and writes.

A newcomer can learn the whole data model from this file. Records travel between stages as JSONL
lines (``data/rounds/rN/*.jsonl``, where a state, chain or step names the instructions and responses
it is about by id: ``ecd.rounds``, which reads them back whole, as declared here) and end as Parquet
rows (``data/pairs``); every ``id`` is a content hash (``ecd.records.content_id``), so the same
inputs give the same ids and bytes.

Seed to pair, one record at a time::

    Instruction (r0, from the seed file)
      └─ Response (the teacher's answers)  ─→ Verdict (per-constraint results)  ─→ State (root)
    State ─→ Chain (evolve: parent state + candidate Instruction of round t)
      └─ Response ─→ Verdict ─→ State (the chain's new state) and Step (I(t), R(t), R(t-1))
    Step ─→ Pair (TRL's preference format with IFEval's constraint columns)

These are ``TypedDict``s: plain dicts on disk and in memory (JSON and ``datasets`` read and write
them as they are), with the shape checked by mypy in ``make test`` (stages read them with
``ecd.records.read_records(path, Record)``) and documented here. The pair table's columns are
derived from ``Pair`` (``ecd.pairs.features``).

Glossary — one word, one thing:

- **seed instruction**: a task of the seed set (``data/self-instruct``), round 0 of its chains;
  the **seeds** section and stage read them. A key named ``seed`` (``evolve.seed``, ``train.seed``,
  ...) is always a **random seed**, which only ever fixes a draw; ``ecd grid queue --random-seeds``
  lists them.
- **instruction**: the prompt a model answers (``Instruction.text``); each of its requirements is a
  **constraint** (``ConstraintRecord``; IFEval calls them "instructions", hence its column names
  ``instruction_id_list`` and ``follow_instruction_list``, kept in the records IFEval's tools read).
- **chain**: one line of evolution from a seed instruction; ``chain`` is its id
  (``<root_id>-c<k>``), ``Chain`` one round's attempt, ``State`` where the chain stands after it.
- **step**: an accepted round of a chain: I(t), its verified answer R(t), and R(t-1).
- **pair**: a preference row (prompt, chosen, rejected); a **row** is a pair without its rejected
  side (``row_id``), what matched strategies share.
- **strategy**: how a pair's rejected answer is found (``ecd``, ``model_gap``, ``random``, ``seed_answer``).
- **student**: a model trained here: ``base`` (before training), ``sft``, ``control`` (SFT-only, on
  the pairs' rows) and ``preference`` (stage ``train``, trained with the preference loss of
  ``train.dpo.loss_type``, RPO by default: ``train.dpo`` is named for TRL's DPO trainer, which runs
  every loss). Each student's folder, metrics and evaluation records carry its name.
- **teacher**, **judge**, **weak model**: the models behind the backends (``ecd.backends``) that
  answer and evolve, check what code cannot, and give ``model_gap``'s weak side.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from typing_extensions import NotRequired


class Message(TypedDict):
    """One chat message, as chat templates and TRL's conversational format take it."""

    role: Literal["system", "user", "assistant"]
    content: str


def user(text: str) -> list[Message]:
    """The prompt of a single-turn conversation: every request and pair prompt is built here."""
    return [{"role": "user", "content": text}]


def assistant(text: str) -> list[Message]:
    """An answer in TRL's conversational format (a pair's ``chosen`` or ``rejected``)."""
    return [{"role": "assistant", "content": text}]


class ConstraintRecord(TypedDict):
    """One requirement of an instruction (``ecd.constraints.Constraint.to_record``)."""

    id: str  #: the type id, IFEval's where the type is IFEval's (``punctuation:no_comma``)
    kwargs: dict[str, Any]  #: the type's parameters, IFEval's schema for IFEval's types
    text: str  #: the requirement in words, as the instruction states it
    verifiable: bool  #: checked by code (True) or by the judge model (False)


class Source(TypedDict):
    """Where a seed came from."""

    id: str  #: the id in the seed file (or file:line where it has none)
    name: str  #: the seed task's name, a hint for titles


class TeacherInfo(TypedDict):
    backend: str  #: the backend that evolved the instruction
    model: str  #: its identity (``Backend.identity``): name plus revision or weights hash


class Instruction(TypedDict):
    """An instruction I(t): a seed (round 0) or an evolved candidate. ``instructions.jsonl``."""

    id: str  #: content hash of the parent, chain, round, text and constraints (seeds: of text and reference)
    root_id: str  #: the seed this chain started from: the unit of the train/test split
    parent_id: str | None  #: the instruction it was evolved from (None for seeds)
    chain: str | None  #: ``<root_id>-c<k>``; None for seeds, which fork into chains at round 1
    round: int  #: 0 for seeds, t for an instruction evolved in round rt
    text: str  #: the instruction as the student sees it
    constraints: list[ConstraintRecord]  #: every requirement, the parent's first, then the new ones
    operation: str  #: ``seed`` or the taxonomy paths of what this round added, joined by ``+``
    reference: str  #: the seed's reference answer R(0) (the programmatic teacher rewrites it)
    source: Source
    teacher: TeacherInfo | None  #: who evolved it (None for seeds)


class Response(TypedDict):
    """One answer of a model to an instruction. ``responses.jsonl``."""

    id: str  #: content hash of the instruction id, model, sample index and text
    instruction_id: str
    model: str  #: the backend's identity
    sample: int  #: which of the ``sample.n`` answers (each has its own seed)
    text: str
    finish_reason: str  #: ``stop``, ``length`` (cut at max_new_tokens), ``unanswerable``, ``error``, ``rejected``
    prompt_tokens: int
    completion_tokens: int


class ConstraintResult(TypedDict):
    """Whether one answer meets one requirement."""

    id: str  #: the constraint type id
    kwargs: dict[str, Any]
    passed: bool
    method: Literal["code", "judge"]
    judge_reply: NotRequired[str]  #: the judge's raw reply (judge-checked types), kept for audit
    judge_parse: NotRequired[Literal["ok", "unparsable"]]  #: an unparsable reply never passes


class Verdict(TypedDict):
    """Verification of one response. ``verdicts.jsonl``."""

    response_id: str
    instruction_id: str
    results: list[ConstraintResult]  #: one per constraint of the instruction, in its order
    all_pass: bool  #: every constraint passed and the answer is not degenerate
    degenerate: str | None  #: ``empty`` or ``refusal`` whatever the constraints say; else None


class State(TypedDict):
    """A chain's accepted instruction and answer after a round. ``state.jsonl``; round 0 holds the roots."""

    chain: str | None  #: None for a root (round 0)
    root_id: str
    round: int  #: the round of the instruction (a chain that failed a step keeps its old round)
    instruction: Instruction
    response: Response  #: the verified answer: R(t), a hard negative for I(t+1)


class ChainParent(TypedDict):
    instruction: Instruction
    response: Response
    round: int


class Chain(TypedDict):
    """One chain's attempt in a round of evolution. ``chains.jsonl``."""

    chain: str
    root_id: str
    parent: ChainParent  #: the state the chain evolved from: I(t-1) and R(t-1)
    candidate_id: str | None  #: the evolved Instruction, or None when the step was eliminated
    eliminated: str | None  #: why the step failed (``bad_json``, ``near_duplicate``, ...), else None


class Step(TypedDict):
    """An accepted evolution step, the material of an ``ecd`` pair. ``steps.jsonl``."""

    chain: str
    root_id: str
    round: int
    instruction: Instruction  #: I(t)
    chosen: Response  #: R(t), verified against every constraint of I(t)
    rejected: Response  #: R(t-1), the answer to the easier I(t-1)
    chosen_results: list[ConstraintResult]  #: R(t) against I(t)
    rejected_results: list[ConstraintResult]  #: R(t-1) against I(t)
    new_constraints: list[str]  #: the type ids I(t) added to I(t-1)


class Split(TypedDict):
    """The train/test split by seed, computed once by the ``split`` stage. ``data/split.json``."""

    test_fraction: float
    seed: int
    train_roots: list[str]  #: sorted root ids whose chains train the student
    test_roots: list[str]  #: sorted root ids held out for evaluation


class SFTRow(TypedDict):
    """A supervised row: a prompt and one verified answer."""

    prompt: list[Message]
    chosen: list[Message]


class Pair(TypedDict):
    """A preference pair: TRL's conversational format plus metadata. ``data/pairs/{train,test}.parquet``."""

    id: str  #: content hash of prompt, chosen and rejected
    row_id: str  #: content hash of prompt and chosen: the row, the same under every strategy's negative
    prompt: list[Message]
    chosen: list[Message]
    rejected: list[Message]
    strategy: Literal["ecd", "model_gap", "random", "seed_answer"]
    root_id: str
    chain: str
    round: int
    instruction_id: str
    chosen_id: str  #: the Response ids on each side
    rejected_id: str
    chosen_model: str
    rejected_model: str
    n_constraints: int
    new_constraints: list[str]  #: what I(t) added
    missed_constraints: list[str]  #: the constraints the rejected answer fails
    rejected_pass_fraction: float  #: share of I(t)'s constraints the rejected answer passes
    model_gap: float  #: chosen's pass fraction minus rejected's
    difficulty: float  #: the curriculum's measure (easy first)
    instruction_id_list: list[str]  #: IFEval's schema: the constraint ids of the prompt ...
    kwargs: list[dict[str, Any]]  #: ... and their kwargs over the union schema (``ecd.pairs.KWARGS_SCHEMA``)


class EvalRecord(TypedDict):
    """One prompt of an evaluation set, scored. ``data/eval/<student>/<set>.jsonl``.

    IFEval's own result record (its field names, so that IFEval's tools read the file) with the
    loose verdicts beside the strict ones: every metric and its interval can be recomputed from it."""

    key: str  #: the prompt's key in its set (IFEval's, IFBench's, or the held-out instruction's id)
    instruction_id_list: list[str]  #: the prompt's constraint type ids
    prompt: str
    response: str
    follow_all_instructions: bool  #: strict: every constraint met
    follow_instruction_list: list[bool]  #: strict, per constraint
    follow_all_instructions_loose: bool
    follow_instruction_list_loose: list[bool]
