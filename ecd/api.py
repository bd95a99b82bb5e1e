"""ecd from Python: the few calls a notebook needs, over the same code the stages run.

``import ecd`` makes these available as ``ecd.check``, ``ecd.score_benchmark`` and so on (loaded on
first use, so that importing ecd stays cheap). docs/api.md shows them at work.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ecd import layout
from ecd.errors import EcdError
from ecd.schema import Chain, ConstraintRecord, ConstraintResult, Instruction, Pair, Response, State, Step, Verdict

#: what a round's folder holds: file stem → its record type (data/rounds/<round>/<stem>.jsonl)
ROUND_FILES: dict[str, type] = {"instructions": Instruction, "chains": Chain, "responses": Response,
                                 "verdicts": Verdict, "state": State, "steps": Step}


def read_round(round_name: str, kind: str = "steps", rounds_dir: str | Path = layout.ROUNDS) -> list[Any]:
    """One file of an evolution round as typed records: ``kind`` is one of :data:`ROUND_FILES`
    (``steps``: the (I(t), R(t), R(t−1)) contrast steps pairs are made from). Records are whole:
    what the files hold by reference (``ecd.rounds``) is read from the round's files and the round's before."""
    if kind not in ROUND_FILES:
        raise EcdError(f"a round holds {', '.join(ROUND_FILES)}; not {kind!r}")
    from ecd.rounds import Rounds

    return Rounds(rounds_dir).read(round_name, kind)


def read_pairs(split: str = "train", pairs_dir: str | Path = layout.PAIRS) -> list[Pair]:
    """The preference pairs of one split (``train`` or ``test``), in training order."""
    if split not in ("train", "test"):
        raise EcdError(f"the pairs have a train and a test split; not {split!r}")
    from ecd.pairs import load_pairs

    return list(load_pairs(pairs_dir, split).to_list())


def check(answer: str, constraints: Sequence[ConstraintRecord | Mapping[str, Any]]) -> list[ConstraintResult]:
    """Each constraint's verdict on ``answer`` by IFEval's strict rules: constraints as
    ``{"id": "punctuation:no_comma", "kwargs": {}}`` (``ecd constraints`` lists every id)."""
    from ecd import constraints as C
    from ecd.verification import check_all

    for c in constraints:
        C.get(str(c["id"]))  # an unknown id is an error that names the nearest ones
    return check_all(answer, [C.Constraint.from_record(c).to_record() for c in constraints])


def benchmark_prompts(benchmark: str = "ifeval") -> list[dict[str, Any]]:
    """A shipped benchmark's prompts (``ifeval`` or ``ifbench``): each with its ``key``, ``prompt``
    text, ``instruction_id_list`` and ``kwargs``, as the benchmark's input file gives them."""
    from ecd.evaluation import BENCHMARKS, benchmark_prompts as prompts

    if benchmark not in BENCHMARKS:
        raise EcdError(f"benchmarks: {', '.join(BENCHMARKS)}; not {benchmark!r}")
    return prompts(benchmark)


def score_benchmark(responses: Mapping[str, str], benchmark: str = "ifeval") -> dict[str, Any]:
    """Score answers to a shipped benchmark (``ifeval``: IFEval's 541 prompts; ``ifbench``: IFBench's
    294) as the benchmark scores them: ``responses`` maps each prompt's text to its answer. Returns
    the summary (prompt and instruction level, strict and loose) with ``records``: each prompt's
    verdicts, IFEval's output format."""
    from ecd.evaluation import score, scored_records

    prompts = benchmark_prompts(benchmark)
    missing = [p["key"] for p in prompts if p["prompt"] not in responses]
    if missing:
        raise EcdError(f"no response for {len(missing)} of {benchmark}'s {len(prompts)} prompts (keys {missing[:5]}…)")
    summary, results = score([{**p, "response": responses[p["prompt"]]} for p in prompts])
    return {**summary, "records": scored_records(prompts, results)}


def make_pairs(steps: Sequence[Step], strategy: Sequence[str] = ("ecd",), test_roots: set[str] | None = None,
               **pair_params: Any) -> tuple[list[Pair], list[Pair], dict[str, Any]]:
    """Preference pairs from contrast steps (``read_round(r, "steps")`` of every round), as the pair
    stage makes them: returns (train pairs, test pairs, metrics). ``test_roots``: seed ids held out
    (none by default); other keyword arguments are ``pair`` params (``match``, ``seed``, ...)."""
    from ecd.pairing import build_pairs
    from ecd.params import PairParams
    from ecd.verification import check_all

    params = PairParams.model_validate({"strategy": list(strategy), "match": [], **pair_params})
    return build_pairs(list(steps), params, test_roots or set(), check_all)


def cache_stats() -> dict[str, Any]:
    """The call cache's entries, hits, misses and bytes: of its last run and in total."""
    from ecd.cache import CallCache

    return dict(CallCache().summary())
