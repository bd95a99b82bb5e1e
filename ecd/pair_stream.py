"""The pair stage over round files of any size: pairs travel as stubs, their texts join at the end.

``ecd.pairing.build_pairs`` holds every step, and so every instruction and answer, at once: about
0.3 MB a seed. Here the steps are read a chunk of seeds at a time (``ecd.rounds``); each strategy
turns a chunk into pairs with the same functions (``seed_answer`` keeps each seed's R(0) as it
goes: rounds are read in order, so a chain's first step, which holds it, comes before the others),
and each pair is kept as a :class:`Stub`, the pair less its texts (prompt, answers and kwargs, which come back from the round files by id). Matching,
deduplication, the split and the order (``ecd.pairing.combine``) read stubs as they read pairs.
:func:`write_split` then joins the texts back a pair at a time and writes through ``datasets``'
Arrow writer on disk, which gives the Parquet bytes ``save_pairs`` gives. ``random`` keeps one small
entry per usable step (it draws its negatives from all of them); ``model_gap`` reads the steps twice
(the weak model answers the instructions that every other matched strategy can pair).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from ecd.pairing import (Checker, chosen_passes, combine, ecd_pairs, model_gap_pairs, random_draws, random_pair,
                         seed_answer_pairs, weak_instructions)
from ecd.errors import EcdError
from ecd.params import PairParams
from ecd.records import content_id
from ecd.rounds import Rounds, share_rounds, worker_rounds
from ecd.schema import Instruction, Pair, Response, Step, assistant, user

#: a pair's fields that a stub keeps: all but the texts and the kwargs
STUB_FIELDS = ("id", "row_id", "strategy", "root_id", "chain", "round", "instruction_id", "chosen_id", "rejected_id",
               "chosen_model", "rejected_model", "n_constraints", "new_constraints", "missed_constraints",
               "rejected_pass_fraction", "model_gap", "difficulty", "instruction_id_list")


#: a stub's fields that take few values, held once whatever the number of stubs
SHARED_FIELDS = frozenset({"strategy", "root_id", "chain", "chosen_model", "rejected_model", "new_constraints",
                           "missed_constraints", "instruction_id_list"})


class Stub:
    """A pair less its texts: what matching, deduplication, the split, the order and the card read
    (``stub["row_id"]`` as ``pair["row_id"]``). Slots and shared strings keep it to a few hundred bytes."""

    __slots__ = STUB_FIELDS

    def __init__(self, pair: Mapping[str, Any], shared: dict[Any, Any]) -> None:
        for name in STUB_FIELDS:
            value: Any = pair[name]
            if isinstance(value, list):
                value = tuple(value)
            if name in SHARED_FIELDS:
                value = shared.setdefault(value, value)
            setattr(self, name, value)

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


class _Usable:
    """A usable step's reference, for ``random`` and ``model_gap``: round, chain, seed, instruction
    and chosen answer ids (``entry["chain"]``), in slots: one is kept for every usable step."""

    __slots__ = ("round", "chain", "root_id", "instruction_id", "chosen_id")

    def __init__(self, step: Step) -> None:
        # a seed's id is shared by its chains' steps, a chain's by its rounds': held once (sys.intern)
        self.round, self.chain, self.root_id = step["round"], sys.intern(step["chain"]), sys.intern(step["root_id"])
        self.instruction_id, self.chosen_id = step["instruction"]["id"], step["chosen"]["id"]

    def __getstate__(self) -> tuple[Any, ...]:
        return self.round, self.chain, self.root_id, self.instruction_id, self.chosen_id

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        """From a worker process: its ids held once here too."""
        self.round, chain, root_id, self.instruction_id, self.chosen_id = state
        self.chain, self.root_id = sys.intern(chain), sys.intern(root_id)

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


def _less_texts(pair: Pair) -> dict[str, Any]:
    """A pair's stub fields only: what a worker process sends back instead of the pair."""
    return {name: cast(dict[str, Any], pair)[name] for name in STUB_FIELDS}


def _stubs(pairs: Sequence[Mapping[str, Any]], shared: dict[Any, Any]) -> list[Stub]:
    return [Stub(p, shared) for p in pairs]


def build_stubs(rounds: Rounds, round_names: list[str], params: PairParams, test_roots: set[str], check: Checker,
                sample_weak: Callable[[list[Instruction]], dict[str, Response]], per_chunk: int, workers: int = 1
                ) -> tuple[list[Stub], list[Stub], dict[str, Any], dict[str, Response]]:
    """(train stubs, test stubs, metrics, the weak model's answers): ``build_pairs``' result, as stubs,
    from round files read ``per_chunk`` seeds at a time. ``sample_weak`` answers instructions with the
    weak model (``model_gap``), by instruction id. ``workers`` > 1: ``random``'s checks run in that
    many worker processes, by code (``check`` must be ``check_all``'s: no judge)."""
    wanted = list(dict.fromkeys([*(params.match or params.strategy), *params.strategy]))
    share_rounds(rounds)
    shared: dict[Any, Any] = {}
    made: dict[str, tuple[list[Any], Counter[str]]] = {s: ([], Counter()) for s in wanted}
    usable: list[_Usable] = []
    seed_answers: dict[str, Response] = {}  # seed_answer's R(0) by root id, one answer a seed
    count = 0

    def steps() -> Iterator[list[Step]]:
        for rnd in round_names:
            yield from rounds.step_chunks(rnd, per_chunk)

    if workers > 1 and "seed_answer" not in made:  # seed_answer carries each seed's R(0) from chunk to chunk
        from ecd.rounds import chunk_seeds
        from ecd.workers import ordered_map

        per_work = min(per_chunk, chunk_seeds(rounds, workers))
        jobs = ((str(rounds.dir), rnd, refs, params, "ecd" in made)
                for rnd in round_names for refs in rounds.step_ref_chunks(rnd, per_work))
        for stubbed, causes, found, n in ordered_map(_step_chunk, jobs, workers):
            count += n
            if "ecd" in made:
                made["ecd"][0].extend(_stubs(stubbed, shared))
                made["ecd"][1].update(causes)
            usable += found
    else:
        for chunk in steps():
            count += len(chunk)
            if "ecd" in made:
                pairs, causes = ecd_pairs(chunk, params)
                made["ecd"][0].extend(_stubs(pairs, shared))
                made["ecd"][1].update(causes)
            if "seed_answer" in made:
                pairs, causes = seed_answer_pairs(chunk, params, check, seed_answers)
                made["seed_answer"][0].extend(_stubs(pairs, shared))
                made["seed_answer"][1].update(causes)
            usable += [_Usable(s) for s in chunk if chosen_passes(s)]
    if "random" in made:
        ordered = sorted(usable, key=lambda u: (u["root_id"], u["chain"], u["round"]))
        random_stubs, causes = _random_stubs(rounds, ordered, params, check, workers, shared)
        causes["chosen_fails"] += count - len(usable)
        made["random"] = (random_stubs, causes)
    weak: dict[str, Response] = {}
    if "model_gap" in made:
        weak = _weak(rounds, usable, made, params, sample_weak)
        seen: set[str] = set()
        stubs: list[Any] = []
        causes = Counter()
        for chunk in steps():
            pairs, part = model_gap_pairs(chunk, weak, params, check, seen)
            stubs += _stubs(pairs, shared)
            causes.update(part)
        made["model_gap"] = (stubs, causes)
    train, test, metrics = combine(made, params, test_roots, count)
    return train, test, metrics, weak


#: the most usable steps one ``random`` chunk holds
RANDOM_CHUNK = 2_000


def _step_chunk(job: tuple[str, str, list[tuple[int, Any]], PairParams, bool]
                ) -> tuple[list[dict[str, Any]], Counter[str], list[_Usable], int]:
    """A chunk of one round's step references read whole and paired in a worker process: (``ecd``'s
    pairs less their texts, its drop causes, the usable steps' entries, how many steps)."""
    folder, rnd, refs, params, want_ecd = job
    rounds = worker_rounds(folder)
    steps = [rounds.whole_step(rnd, ref, line) for line, ref in refs]
    pairs: list[dict[str, Any]] = []
    causes: Counter[str] = Counter()
    if want_ecd:
        made, causes = ecd_pairs(steps, params)
        pairs = [_less_texts(p) for p in made]
    return pairs, causes, [_Usable(s) for s in steps if chosen_passes(s)], len(steps)


def _random_items(rounds: Rounds, items: list[tuple[_Usable, list[_Usable]]], params: PairParams, check: Checker
                  ) -> list[dict[str, Any] | None]:
    """``random``'s pair, less its texts (or None), for each (entry, candidate negatives) of a chunk."""
    out: list[dict[str, Any] | None] = []
    for u, others in items:
        pair = random_pair(rounds.step(f"r{u['round']}", u["chain"]),
                           (rounds.response(o["chosen_id"], [f"r{o['round']}"]) for o in others), params, check)
        out.append(None if pair is None else _less_texts(pair))
    return out


def _random_chunk(job: tuple[str, list[tuple[_Usable, list[_Usable]]], PairParams]) -> list[dict[str, Any] | None]:
    """:func:`_random_items` in a worker process, checked by code."""
    from ecd.verification import check_all

    folder, items, params = job
    return _random_items(worker_rounds(folder), items, params, check_all)


def _random_stubs(rounds: Rounds, ordered: list[_Usable], params: PairParams, check: Checker, workers: int,
                  shared: dict[Any, Any]) -> tuple[list[Stub], Counter[str]]:
    """``random_pairs_of`` over usable steps' entries, as stubs made as the chunks come back (a pair's
    texts are never held beyond its chunk): the draws here, in order, then chunks of (entry,
    candidates) checked in ``workers`` worker processes (``check`` must then be ``check_all``'s),
    or here with ``check`` (a judge's)."""
    from ecd.workers import ordered_map

    causes: Counter[str] = Counter()

    def chunks() -> Iterator[list[tuple[_Usable, list[_Usable]]]]:
        """The draws in order, a chunk of (entry, candidates) at a time (the workers hold a few chunks)."""
        items: list[tuple[_Usable, list[_Usable]]] = []
        for entry, others in zip(ordered, random_draws(ordered, params)):
            if not others:
                causes["no_other_seed"] += 1
                continue
            items.append((entry, [ordered[k] for k in others]))
            if len(items) == RANDOM_CHUNK:
                yield items
                items = []
        if items:
            yield items

    if workers > 1:
        results = ordered_map(_random_chunk, ((str(rounds.dir), items, params) for items in chunks()), workers)
    else:
        results = (_random_items(rounds, items, params, check) for items in chunks())
    stubs: list[Stub] = []
    for found in results:
        stubs += _stubs([p for p in found if p is not None], shared)
        causes.update(["rejected_passes"] * sum(p is None for p in found))  # no key for none, as random_pairs_of
    return stubs, causes


def _weak(rounds: Rounds, usable: list[_Usable], made: dict[str, tuple[list[Any], Counter[str]]], params: PairParams,
          sample_weak: Callable[[list[Instruction]], dict[str, Response]]) -> dict[str, Response]:
    """``ecd.pairing.weak_answers`` over usable steps' references: the weak model answers the
    instructions ``weak_instructions`` draws, among those every other matched strategy can pair."""
    entries = usable
    if "model_gap" in params.match:
        others = [s for s in params.match if s != "model_gap"]
        if others:
            common = set.intersection(*[{p["instruction_id"] for p in made[s][0]} for s in others])
            entries = [u for u in usable if u["instruction_id"] in common]
    first: dict[str, _Usable] = {}
    for u in entries:
        first.setdefault(u["instruction_id"], u)
    proxies = cast(list[Step], [{"instruction": {"id": iid}, "chosen_results": []} for iid in first])
    drawn = [i["id"] for i in weak_instructions(proxies, params)]
    instructions = [rounds.instruction(f"r{first[iid]['round']}", iid) for iid in drawn]
    return sample_weak(instructions) if instructions else {}


def whole_pair(stub: Stub, rounds: Rounds, weak: dict[str, Response], round_names: list[str]) -> Pair:
    """A stub's pair with its texts and kwargs, read back from the round files (and ``weak``: the
    weak model's answers by response id)."""
    from ecd.pairs import ifeval_kwargs

    rnd = f"r{stub['round']}"
    inst = rounds.instruction(rnd, stub["instruction_id"])
    chosen = rounds.response(stub["chosen_id"], [rnd])
    every = ["r0", *round_names]
    rejected = weak.get(stub["rejected_id"]) or rounds.response(stub["rejected_id"], [*reversed(every[:every.index(rnd)]), *every])
    pair = {name: stub[name] for name in STUB_FIELDS}
    pair.update(prompt=user(inst["text"]), chosen=assistant(chosen["text"]), rejected=assistant(rejected["text"]),
                kwargs=[ifeval_kwargs(c["kwargs"]) for c in inst["constraints"]],
                new_constraints=list(stub["new_constraints"]), missed_constraints=list(stub["missed_constraints"]),
                instruction_id_list=list(stub["instruction_id_list"]))
    if content_id(pair["prompt"], pair["chosen"], pair["rejected"]) != stub["id"]:
        raise EcdError(f"pair {stub['id']}: the texts read back from {rounds.dir} do not hash to its id "
                       "(a round file changed while the pair stage ran?)")
    return cast(Pair, pair)


def write_split(path: Path, rows: Iterator[dict[str, Any]], features: Any, work: Path) -> None:
    """Write rows to a Parquet file through an Arrow file on disk (``work``): memory holds a batch,
    and the bytes are those of ``Dataset.from_dict(...).to_parquet``."""
    from datasets import Dataset
    from datasets.arrow_writer import ArrowWriter

    work.mkdir(parents=True, exist_ok=True)
    arrow = work / f"{path.stem}.arrow"
    with ArrowWriter(features=features, path=str(arrow), writer_batch_size=1000) as writer:
        for row in rows:
            writer.write(row)
        writer.finalize()
    Dataset.from_file(str(arrow)).to_parquet(str(path))
    arrow.unlink()


#: the most stubs one chunk of ``save_stubs``' worker processes reads back whole
WHOLE_CHUNK = 1_000


def _whole_chunk(job: tuple[str, list[Stub], dict[str, Response], list[str], tuple[str, ...] | None]
                 ) -> list[dict[str, Any]]:
    """A chunk of stubs read back whole in a worker process (``columns``: only those)."""
    folder, stubs, by_id, round_names, columns = job
    rounds = worker_rounds(folder)
    out = []
    for stub in stubs:
        pair = cast(dict[str, Any], whole_pair(stub, rounds, by_id, round_names))
        out.append(pair if columns is None else {k: pair[k] for k in columns})
    return out


def save_stubs(out_dir: Path, rows_path: Path, train: list[Stub], test: list[Stub], card: str, rounds: Rounds,
               weak: dict[str, Response], round_names: list[str], work: Path, workers: int = 1) -> None:
    """``ecd.pairs.save_pairs`` and ``save_rows`` for stubs: each pair read back whole as it is
    written (``workers`` > 1: a chunk at a time in that many worker processes, in order), both files
    replaced atomically."""
    from ecd.pairs import ROW_COLUMNS, features
    from ecd.records import atomic_path, write_text
    from ecd.workers import ordered_map

    feats = features()
    by_id = {r["id"]: r for r in weak.values()}
    share_rounds(rounds)

    def rows(stubs: list[Stub], columns: tuple[str, ...] | None = None) -> Iterator[dict[str, Any]]:
        jobs = ((str(rounds.dir), part, {s["rejected_id"]: by_id[s["rejected_id"]] for s in part if s["rejected_id"] in by_id},
                 round_names, columns) for part in (stubs[k:k + WHOLE_CHUNK] for k in range(0, len(stubs), WHOLE_CHUNK)))
        for found in ordered_map(_whole_chunk, jobs, workers):
            yield from found

    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for name, stubs in (("train", train), ("test", test)):
            write_split(tmp / f"{name}.parquet", rows(stubs), feats, work)
        write_text(tmp / "README.md", card)
    with atomic_path(rows_path) as tmp:
        write_split(tmp, rows(train, ROW_COLUMNS), type(feats)({k: feats[k] for k in ROW_COLUMNS}), work)
