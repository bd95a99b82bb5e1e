"""Pair strategies: turn accepted evolution steps into preference pairs, split by seed.

An ``ecd`` pair is (I(t), chosen R(t), rejected R(t-1)). R(t-1) was written for I(t-1), so it meets
most of I(t)'s requirements and misses the new one: a hard negative (``ecd.contrast``). A pair is
kept only when that holds as checked — the chosen response passes every constraint, the rejected
one misses at least ``min_missed`` of them, one of them new, and still passes at least
``min_rejected_pass_fraction`` of them. ``model_gap`` pairs put a strong model's verified answer
over a weak model's answer to the same instruction; ``random`` pairs put it over another seed's
answer (the baseline); ``seed_answer`` pairs put it over R(0), the answer to the seed instruction the
chain started from: the same task, with none of the added requirements attempted (an extra arm
between ECD's one-requirement contrast and random's off-task one). Strategies combine.

The table the pairs are saved as, and its card, are ``ecd.pairs``; the split is ``ecd.split``.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ecd.contrast import hard_negative_flaw, pass_fraction
from ecd.matching import combine
from ecd.pairs import ifeval_kwargs
from ecd.params import PairParams, StrategyName
from ecd.records import content_id
from ecd.schema import ConstraintRecord, ConstraintResult, Instruction, Pair, Response, Step, assistant, user
from ecd.stubs import STUB_FIELDS, Columns

#: ``check(text, constraints)``: per-constraint results of an answer that no round verified
Checker = Callable[[str, list[ConstraintRecord]], list[ConstraintResult]]

def chosen_passes(step: Step) -> bool:
    """Whether the step's chosen R(t) meets every constraint of I(t): the first rule of every strategy."""
    return all(r["passed"] for r in step["chosen_results"])


def make_pair(strategy: StrategyName, step: Step, rejected: Response, rejected_results: list[ConstraintResult],
              curriculum: str) -> Pair:
    """A pair row: the step's instruction and chosen R(t) against ``rejected``, with its metadata."""
    inst = step["instruction"]
    prompt = user(inst["text"])
    chosen = assistant(step["chosen"]["text"])
    rej = assistant(rejected["text"])
    cons = inst["constraints"]
    missed = [r["id"] for r in rejected_results if not r["passed"]]
    frac = pass_fraction(rejected_results)
    gap = pass_fraction(step["chosen_results"]) - frac
    difficulty = {"none": float(step["round"]), "round": float(step["round"]), "missed": frac, "gap": 1.0 - gap}
    return {
        "id": content_id(prompt, chosen, rej),
        "row_id": content_id(prompt, chosen),
        "prompt": prompt,
        "chosen": chosen,
        "rejected": rej,
        "strategy": strategy,
        "root_id": step["root_id"],
        "chain": step["chain"],
        "round": step["round"],
        "instruction_id": inst["id"],
        "chosen_id": step["chosen"]["id"],
        "rejected_id": rejected["id"],
        "chosen_model": step["chosen"]["model"],
        "rejected_model": rejected["model"],
        "n_constraints": len(cons),
        "new_constraints": step["new_constraints"],
        "missed_constraints": missed,
        "rejected_pass_fraction": frac,
        "model_gap": gap,
        "difficulty": difficulty[curriculum],
        "instruction_id_list": [c["id"] for c in cons],
        "kwargs": [ifeval_kwargs(c["kwargs"]) for c in cons],
    }


def ecd_pair(step: Step, params: PairParams) -> tuple[Pair | None, str | None]:
    """The hard-negative pair (I(t), R(t), R(t-1)) of one accepted step, or the reason it is not one."""
    if not chosen_passes(step):
        return None, "chosen_fails"
    flaw = hard_negative_flaw(step["rejected_results"], step["new_constraints"], params.min_missed,
                              params.min_rejected_pass_fraction)
    if flaw:
        return None, flaw
    return make_pair("ecd", step, step["rejected"], step["rejected_results"], params.curriculum), None


def ecd_pairs(steps: list[Step], params: PairParams) -> tuple[list[Pair], Counter[str]]:
    """Every step's hard-negative pair, with the causes of the steps that give none."""
    made: list[Pair] = []
    causes: Counter[str] = Counter()
    for step in steps:
        pair, cause = ecd_pair(step, params)
        if pair is None:
            assert cause is not None  # ecd_pair gives a pair or the reason for none
            causes[cause] += 1
        else:
            made.append(pair)
    return made, causes


def _misses_enough(results: list[ConstraintResult], params: PairParams) -> bool:
    """Whether an answer that no round wrote for this instruction misses at least ``min_missed`` of it."""
    return sum(not r["passed"] for r in results) >= params.min_missed


#: how many other seeds' answers ``random`` tries, in a seeded order, for one that misses enough
RANDOM_TRIES = 16


def random_pairs(steps: list[Step], params: PairParams, check: Checker) -> tuple[list[Pair], Counter[str]]:
    """The baseline: each step's chosen R(t) against the chosen answer of a step from another seed,
    drawn with ``pair.seed``: the first of up to :data:`RANDOM_TRIES` draws that misses at least
    ``min_missed`` of I(t)'s constraints (so that nearly every row has a random negative, which
    matched rows need)."""
    usable = [s for s in sorted(steps, key=lambda s: (s["root_id"], s["chain"], s["round"])) if chosen_passes(s)]
    out, dropped = random_pairs_of(usable, params, check, lambda s: s, lambda s: s["chosen"])
    dropped["chosen_fails"] += len(steps) - len(usable)
    return out, dropped


def random_pairs_of(usable: Sequence[Any], params: PairParams, check: Checker, step_of: Callable[[Any], Step],
                    chosen_of: Callable[[Any], Response]) -> tuple[list[Pair], Counter[str]]:
    """:func:`random_pairs` over ``usable`` entries (sorted by seed, chain and round, chosen answer
    verified), each a step or a reference to one that ``step_of`` and ``chosen_of`` resolve: the draws
    depend only on the entries' count and seeds, so the pairs are the same either way."""
    dropped: Counter[str] = Counter()
    out = []
    for entry, others in zip(usable, random_draws([u["root_id"] for u in usable], params)):
        if not others:
            dropped["no_other_seed"] += 1
            continue
        pair = random_pair(step_of(entry), (chosen_of(usable[k]) for k in others), params, check)
        if pair is None:
            dropped["rejected_passes"] += 1
        else:
            out.append(pair)
    return out, dropped


def is_seed_answer(step: Step) -> bool:
    """Whether the step's rejected answer is R(0), the answer to its seed instruction (a chain's
    first step: every root's chains start from its round-0 answer)."""
    return step["rejected"]["instruction_id"] == step["root_id"]


def seed_answer_pair(step: Step, seed_answer: Response | None, params: PairParams, check: Checker
                     ) -> tuple[Pair | None, str | None]:
    """The step's chosen R(t) over ``seed_answer``, the chain's R(0), or the reason for none: the
    same task as the chosen answer, none of I(t)'s added requirements attempted. It misses at least
    the requirement round 1 drew (evolution draws requirements the current answer misses), so
    nearly every ECD row has one."""
    if not chosen_passes(step):
        return None, "chosen_fails"
    if seed_answer is None:
        return None, "no_seed_answer"
    results = check(seed_answer["text"], step["instruction"]["constraints"])
    if not _misses_enough(results, params):
        return None, "rejected_passes"
    return make_pair("seed_answer", step, seed_answer, results, params.curriculum), None


def seed_answer_pairs(steps: Sequence[Step], params: PairParams, check: Checker,
                      seed_answers: dict[str, Response] | None = None) -> tuple[list[Pair], Counter[str]]:
    """Every step's :func:`seed_answer_pair`. ``seed_answers`` (R(0) by root id) is read and filled
    from the steps' own rejected answers (a chain's first step holds it), so that round files read
    in chunks, round by round, find each root's R(0) before the chain's later steps need it."""
    found: dict[str, Response] = {} if seed_answers is None else seed_answers
    for step in steps:
        if is_seed_answer(step):
            found.setdefault(step["root_id"], step["rejected"])
    made: list[Pair] = []
    causes: Counter[str] = Counter()
    for step in steps:
        pair, cause = seed_answer_pair(step, found.get(step["root_id"]), params, check)
        if pair is None:
            causes[str(cause)] += 1
        else:
            made.append(pair)
    return made, causes


def random_draws(roots: Sequence[str], params: PairParams) -> Iterator[list[int]]:
    """Each usable entry's candidate negatives in turn, in the order tried: :data:`RANDOM_TRIES` draws
    with ``pair.seed`` among all entries (``roots``: each entry's seed), less those of its own seed
    (an empty list: none left)."""
    rng = random.Random(content_id("random", params.seed))
    indices = range(len(roots))
    for root in roots:
        picks = [rng.choice(indices) for _ in range(RANDOM_TRIES)]  # rng.choice(usable)'s draws, as indices
        yield [k for k in picks if roots[k] != root]


def random_pair(step: Step, answers: Iterator[Response], params: PairParams, check: Checker) -> Pair | None:
    """The step's chosen answer against the first of ``answers`` that misses at least ``min_missed``
    of its constraints, or None."""
    for answer in answers:
        results = check(answer["text"], step["instruction"]["constraints"])
        if _misses_enough(results, params):
            return make_pair("random", step, answer, results, params.curriculum)
    return None


def weak_instructions(steps: list[Step], params: PairParams) -> list[Instruction]:
    """The instructions the weak model answers for ``model_gap``: each distinct I(t) whose chosen
    answer passes (the others can give no pair), at most ``weak_limit`` of them, drawn with
    ``pair.seed`` and kept in step order. A weak model's answers cost as much as the teacher's, and
    a run that trains on a few hundred pairs needs them for a few hundred instructions, not all."""
    usable: dict[str, Instruction] = {}
    for step in steps:
        if chosen_passes(step):
            usable.setdefault(step["instruction"]["id"], step["instruction"])
    if params.weak_limit is None or params.weak_limit >= len(usable):
        return list(usable.values())
    drawn = set(random.Random(content_id("weak", params.seed)).sample(sorted(usable), params.weak_limit))
    return [inst for iid, inst in usable.items() if iid in drawn]


def weak_answers(steps: list[Step], params: PairParams, check: Checker | None = None) -> dict[str, Response] | None:
    """``model_gap``'s weak side: the weak model's (``pair.weak``) answer to each instruction of
    ``weak_instructions``, through the call cache, by instruction id; None where no strategy of
    ``params`` needs it. With ``model_gap`` among matched strategies (``pair.match``) and ``check``
    given, only the instructions every other matched strategy can pair are answered: a weak answer
    elsewhere could never reach a matched row, and each one costs a model call."""
    if "model_gap" not in params.strategy and "model_gap" not in params.match:
        return None
    from ecd.backends import make_backend
    from ecd.sampling import sample_responses

    if check is not None and "model_gap" in params.match:
        others = [s for s in params.match if s != "model_gap"]
        pairable = [{p["instruction_id"] for p in strategy_pairs(s, steps, params, check, None)[0]} for s in others]
        if pairable:
            common = set.intersection(*pairable)
            steps = [s for s in steps if s["instruction"]["id"] in common]
    answers, _ = sample_responses(weak_instructions(steps, params), make_backend(params.weak), 1, params.seed, "weak")
    return {a["instruction_id"]: a for a in answers}


def model_gap_pairs(steps: list[Step], weak: dict[str, Response], params: PairParams,
                    check: Checker, seen: set[str] | None = None) -> tuple[list[Pair], Counter[str]]:
    """Automatic pair construction: the strong model's verified answer to I(t) (the step's chosen)
    over the weak model's answer to the same instruction (``weak``: response records by
    instruction id; an instruction left out of ``weak_instructions`` by ``weak_limit`` has none).
    Kept when the weak answer is a real answer that differs from the strong one and, where I(t)
    has constraints, misses at least ``min_missed`` of them. ``seen``: the instructions already
    paired or dropped, shared by the chunks of one run (each instruction once, its first step)."""
    dropped: Counter[str] = Counter()
    out = []
    seen = set() if seen is None else seen
    for step in steps:
        inst = step["instruction"]
        if inst["id"] in seen:
            continue
        seen.add(inst["id"])
        if not chosen_passes(step):
            dropped["chosen_fails"] += 1
            continue
        w = weak.get(inst["id"])
        if w is None:
            dropped["weak_not_sampled"] += 1
            continue
        if not w["text"].strip():
            dropped["weak_empty"] += 1
            continue
        if " ".join(w["text"].split()) == " ".join(step["chosen"]["text"].split()):
            dropped["no_gap"] += 1
            continue
        results = check(w["text"], inst["constraints"])
        if inst["constraints"] and not _misses_enough(results, params):
            dropped["weak_passes"] += 1
            continue
        out.append(make_pair("model_gap", step, w, results, params.curriculum))
    return out, dropped


def strategy_pairs(strategy: StrategyName, steps: list[Step], params: PairParams, check: Checker,
                   weak: dict[str, Response] | None) -> tuple[list[Pair], Counter[str]]:
    """One strategy's pairs with the causes of the steps that gave none."""
    if strategy == "ecd":
        return ecd_pairs(steps, params)
    if strategy == "random":
        return random_pairs(steps, params, check)
    if strategy == "seed_answer":
        return seed_answer_pairs(steps, params, check)
    return model_gap_pairs(steps, weak or {}, params, check)


def build_pairs(
    steps: list[Step],
    params: PairParams,
    test_roots: set[str],
    check: Checker,
    weak: dict[str, Response] | None = None,
) -> tuple[list[Pair], list[Pair], dict[str, Any]]:
    """Returns (train pairs, test pairs, metrics) from the strategies in ``pair.strategy``.

    ``check(text, constraints)`` verifies a response that was not verified before (random and weak
    answers); ``weak`` holds the weak model's answers for ``model_gap``. Pairs are matched or
    deduplicated, split by seed (the pairs of ``test_roots``, the ``split`` stage's held-out seeds,
    are the test pairs) and ordered by ``ecd.matching``'s rules. (The pair stage does the same over round
    files of any size: ``ecd.pair_stream``.)
    """
    wanted = params.match or params.strategy  # every matched strategy runs, so that the rows do not depend on pair.strategy
    made_by = {s: strategy_pairs(s, steps, params, check, weak) for s in dict.fromkeys([*wanted, *params.strategy])}
    _, train, test, metrics = combine({s: (Columns.of(made, STUB_FIELDS), causes) for s, (made, causes) in made_by.items()},
                                      params, test_roots, len(steps))
    every = [pair for s in params.strategy for pair in made_by[s][0]]
    return [every[i] for i in train.tolist()], [every[i] for i in test.tolist()], metrics
