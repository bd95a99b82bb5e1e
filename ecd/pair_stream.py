"""The pair stage over round files of any size: pairs travel as stubs, their texts join at the end.

``ecd.pairing.build_pairs`` holds every step, and so every instruction and answer, at once: about
0.3 MB a seed. Here the steps are read a chunk of seeds at a time (``ecd.rounds``); each strategy
turns a chunk into pairs with the same functions (``seed_answer`` keeps each seed's R(0) as it
goes: rounds are read in order, so a chain's first step, which holds it, comes before the others),
and each chunk's pairs are kept as stubs, the pairs less their texts (prompt, answers and kwargs,
which come back from the round files by id), in columns (``ecd.stubs``). Matching, deduplication,
the split and the order (``ecd.matching``) run on those columns, as they do for ``build_pairs``.
:func:`write_split` then joins the texts back a pair at a time and writes through ``datasets``'
Arrow writer on disk, which gives the Parquet bytes ``save_pairs`` gives. ``random`` keeps a
reference to every usable step (it draws its negatives from all of them); ``model_gap`` reads the
steps twice (the weak model answers the instructions that every other matched strategy can pair).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from ecd.errors import EcdError
from ecd.matching import combine
from ecd.pairing import (Checker, chosen_passes, ecd_pairs, model_gap_pairs, random_draws, random_pair, seed_answer_pairs,
                         weak_instructions)
from ecd.params import PairParams
from ecd.records import content_id
from ecd.rounds import Rounds, share_rounds, worker_rounds
from ecd.schema import Instruction, Pair, Response, Step, assistant, user
from ecd.stubs import MATCH_FIELDS, STUB_FIELDS, USABLE_FIELDS, Columns, Kind


def _usable(steps: Sequence[Step]) -> Columns:
    """The usable steps' references (``USABLE_FIELDS``), for ``random`` and ``model_gap``."""
    return Columns.of([{"round": s["round"], "chain": s["chain"], "root_id": s["root_id"],
                        "instruction_id": s["instruction"]["id"], "chosen_id": s["chosen"]["id"]}
                       for s in steps if chosen_passes(s)], USABLE_FIELDS)


def build_stubs(rounds: Rounds, round_names: list[str], params: PairParams, test_roots: set[str], check: Checker,
                sample_weak: Callable[[list[Instruction]], dict[str, Response]], per_chunk: int, workers: int = 1
                ) -> tuple[Columns, Columns, dict[str, Any], dict[str, Response]]:
    """(train stubs, test stubs, metrics, the weak model's answers): ``build_pairs``' result, as
    stubs in columns, from round files read ``per_chunk`` seeds at a time. ``sample_weak`` answers
    instructions with the weak model (``model_gap``), by instruction id. ``workers`` > 1: the steps'
    chunks and ``random``'s checks run in that many worker processes, by code (``check`` must be
    ``check_all``'s: no judge)."""
    wanted = list(dict.fromkeys([*(params.match or params.strategy), *params.strategy]))
    spec = {s: STUB_FIELDS if s in params.strategy else MATCH_FIELDS for s in wanted}  # matched, not written: less
    share_rounds(rounds)
    parts: dict[str, list[Columns]] = {s: [] for s in wanted}
    causes: dict[str, Counter[str]] = {s: Counter() for s in wanted}
    usable_parts: list[Columns] = []
    seed_answers: dict[str, Response] = {}  # seed_answer's R(0) by root id, one answer a seed
    count = 0

    def steps() -> Iterator[list[Step]]:
        for rnd in round_names:
            yield from rounds.step_chunks(rnd, per_chunk)

    if workers > 1 and "seed_answer" not in wanted:  # seed_answer carries each seed's R(0) from chunk to chunk
        from ecd.rounds import chunk_seeds
        from ecd.workers import ordered_map

        per_work = min(per_chunk, chunk_seeds(rounds, workers), STEP_CHUNK_SEEDS)
        jobs = ((str(rounds.dir), rnd, refs, params, spec.get("ecd"))
                for rnd in round_names for refs in rounds.step_ref_chunks(rnd, per_work))
        for stubs, found, usable, n in ordered_map(_step_chunk, jobs, workers):
            count += n
            if "ecd" in wanted:
                parts["ecd"].append(stubs)
                causes["ecd"].update(found)
            usable_parts.append(usable)
    else:
        for chunk in steps():
            count += len(chunk)
            if "ecd" in wanted:
                pairs, found = ecd_pairs(chunk, params)
                parts["ecd"].append(Columns.of(pairs, spec["ecd"]))
                causes["ecd"].update(found)
            if "seed_answer" in wanted:
                pairs, found = seed_answer_pairs(chunk, params, check, seed_answers)
                parts["seed_answer"].append(Columns.of(pairs, spec["seed_answer"]))
                causes["seed_answer"].update(found)
            usable_parts.append(_usable(chunk))
    made: dict[str, tuple[Columns, Counter[str]]] = {s: (Columns.concat(parts.pop(s), spec[s]), causes[s])
                                                     for s in ("ecd", "seed_answer") if s in wanted}
    usable = Columns.concat(usable_parts, USABLE_FIELDS)
    del usable_parts
    if "random" in wanted:
        made["random"] = (_random_stubs(rounds, usable, params, check, workers, causes["random"], spec["random"]),
                          causes["random"])
        causes["random"]["chosen_fails"] += count - len(usable)
    weak: dict[str, Response] = {}
    if "model_gap" in wanted:
        weak = _weak(rounds, usable, made, params, sample_weak)
        seen: set[str] = set()
        for chunk in steps():
            pairs, found = model_gap_pairs(chunk, weak, params, check, seen)
            parts["model_gap"].append(Columns.of(pairs, spec["model_gap"]))
            causes["model_gap"].update(found)
        made["model_gap"] = (Columns.concat(parts.pop("model_gap"), spec["model_gap"]), causes["model_gap"])
    every, train, test, metrics = combine(made, params, test_roots, count)
    return every.take(train), every.take(test), metrics, weak


#: the most seeds one chunk of step references sent to a worker holds: a reference carries its rejected
#: answer's verdicts (a few kB as Python objects), and twice as many chunks as workers are in flight
STEP_CHUNK_SEEDS = 500

#: the most usable steps one ``random`` chunk holds
RANDOM_CHUNK = 2_000


def _step_chunk(job: tuple[str, str, list[tuple[int, Any]], PairParams, Mapping[str, Kind] | None]
                ) -> tuple[Columns, Counter[str], Columns, int]:
    """A chunk of one round's step references read whole and paired in a worker process: (``ecd``'s
    pairs as stubs with the fields of ``spec``, its drop causes, the usable steps' references, how
    many steps). ``spec`` None: no ``ecd`` pairs."""
    folder, rnd, refs, params, spec = job
    rounds = worker_rounds(folder)
    steps = [rounds.whole_step(rnd, ref, line) for line, ref in refs]
    pairs: list[Pair] = []
    causes: Counter[str] = Counter()
    if spec is not None:
        pairs, causes = ecd_pairs(steps, params)
    return Columns.of(pairs, spec or STUB_FIELDS), causes, _usable(steps), len(steps)


Item = tuple[dict[str, Any], list[dict[str, Any]]]  #: a usable step's reference and its candidate negatives'


def _random_items(rounds: Rounds, items: list[Item], params: PairParams, check: Checker, spec: Mapping[str, Kind]
                  ) -> Columns:
    """``random``'s pairs, as stubs, for each (entry, candidate negatives) of a chunk that gives one
    (the others' causes are the entries less the pairs)."""
    out: list[Pair] = []
    for u, others in items:
        pair = random_pair(rounds.step(f"r{u['round']}", u["chain"]),
                           (rounds.response(o["chosen_id"], [f"r{o['round']}"]) for o in others), params, check)
        if pair is not None:
            out.append(pair)
    return Columns.of(out, spec)


def _random_chunk(job: tuple[str, list[Item], PairParams, Mapping[str, Kind]]) -> Columns:
    """:func:`_random_items` in a worker process, checked by code."""
    from ecd.verification import check_all

    folder, items, params, spec = job
    return _random_items(worker_rounds(folder), items, params, check_all, spec)


def _random_stubs(rounds: Rounds, usable: Columns, params: PairParams, check: Checker, workers: int,
                  causes: Counter[str], spec: Mapping[str, Kind]) -> Columns:
    """``random_pairs_of`` over the usable steps' references, as stubs (a pair's texts are never
    held beyond its chunk): the draws here, in order (by seed, chain and round), then chunks of
    (entry, candidates) checked in ``workers`` worker processes (``check`` must then be
    ``check_all``'s), or here with ``check`` (a judge's). Counts the causes into ``causes``."""
    from ecd.workers import ordered_map

    c = usable.columns
    ordered = usable.take(np.lexsort((c["round"], c["chain"], c["root_id"])))
    roots = np.unique(ordered.columns["root_id"], return_inverse=True)[1].tolist()  # each entry's seed, as a number

    def chunk(drawn: list[tuple[int, list[int]]]) -> list[Item]:
        needed = sorted({k for i, others in drawn for k in (i, *others)})
        rows = dict(zip(needed, ordered.take(np.array(needed, dtype=np.int64)).rows()))
        return [(rows[i], [rows[k] for k in others]) for i, others in drawn]

    def chunks() -> Iterator[list[Item]]:
        """The draws in order, a chunk of (entry, candidates) at a time (the workers hold a few chunks)."""
        drawn: list[tuple[int, list[int]]] = []
        for i, others in enumerate(random_draws(roots, params)):
            if not others:
                causes["no_other_seed"] += 1
                continue
            drawn.append((i, others))
            if len(drawn) == RANDOM_CHUNK:
                yield chunk(drawn)
                drawn = []
        if drawn:
            yield chunk(drawn)

    if workers > 1:
        found = Columns.concat(ordered_map(_random_chunk, ((str(rounds.dir), items, params, spec) for items in chunks()),
                                           workers), spec)
    else:
        found = Columns.concat((_random_items(rounds, items, params, check, spec) for items in chunks()), spec)
    tried = len(ordered) - causes["no_other_seed"]
    if tried > len(found):  # no key for none, as random_pairs_of
        causes["rejected_passes"] += tried - len(found)
    return found


def _weak(rounds: Rounds, usable: Columns, made: dict[str, tuple[Columns, Counter[str]]], params: PairParams,
          sample_weak: Callable[[list[Instruction]], dict[str, Response]]) -> dict[str, Response]:
    """``ecd.pairing.weak_answers`` over usable steps' references: the weak model answers the
    instructions ``weak_instructions`` draws, among those every other matched strategy can pair."""
    entries = usable
    if "model_gap" in params.match:
        others = [s for s in params.match if s != "model_gap"]
        if others:
            common = np.unique(made[others[0]][0].columns["instruction_id"])
            for s in others[1:]:
                common = np.intersect1d(common, made[s][0].columns["instruction_id"])
            entries = usable.take(np.flatnonzero(np.isin(usable.columns["instruction_id"], common)))
    first: dict[str, int] = {}
    for iid, rnd in zip(entries.values("instruction_id"), entries.values("round")):
        first.setdefault(iid, rnd)
    proxies = cast(list[Step], [{"instruction": {"id": iid}, "chosen_results": []} for iid in first])
    drawn = [i["id"] for i in weak_instructions(proxies, params)]
    instructions = [rounds.instruction(f"r{first[iid]}", iid) for iid in drawn]
    return sample_weak(instructions) if instructions else {}


def whole_pair(stub: Mapping[str, Any], rounds: Rounds, weak: dict[str, Response], round_names: list[str]) -> Pair:
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
    from datasets.arrow_writer import ArrowWriter

    work.mkdir(parents=True, exist_ok=True)
    arrow = work / f"{path.stem}.arrow"
    with ArrowWriter(features=features, path=str(arrow), writer_batch_size=1000) as writer:
        for row in rows:
            writer.write(row)
        writer.finalize()
    _parquet_from_arrow(arrow, path, features)
    arrow.unlink()


def _parquet_from_arrow(arrow: Path, path: Path, features: Any) -> None:
    """``Dataset.from_file(arrow).to_parquet(path)``, byte for byte, with the Arrow file read as a
    stream: ``datasets`` reads it through a memory map, whose pages count as the process's memory
    as they are read (the whole file by the end: 1.1 GB of train pairs at 52,500 seeds). Row groups,
    options and metadata are the ones ``datasets``' Parquet writer chooses for that file (100 MB row
    groups, content-defined chunking); ``tests/test_data_at_scale.py`` checks the bytes."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset
    from datasets.arrow_writer import get_parquet_column_options
    from datasets.io.parquet import ParquetDatasetWriter

    plan = ParquetDatasetWriter(Dataset.from_file(str(arrow)), str(path))  # its choices; the map itself is not read
    size, cdc, page_index = plan.batch_size, plan.use_content_defined_chunking, plan.write_page_index
    schema = features.arrow_schema
    del plan
    with pq.ParquetWriter(str(path), schema=schema, use_content_defined_chunking=cdc, write_page_index=page_index,
                          **get_parquet_column_options(features, schema)) as writer, pa.OSFile(str(arrow), "rb") as source:
        held: list[pa.RecordBatch] = []
        count = 0
        for batch in pa.ipc.open_stream(source):
            held.append(batch)
            count += batch.num_rows
            while count >= size:  # a row group of ``size`` rows, as datasets slices its table
                table = pa.Table.from_batches(held, schema=batch.schema)
                writer.write_table(table.slice(0, size))
                rest = table.slice(size)
                held, count = rest.to_batches(), rest.num_rows
        if count:
            writer.write_table(pa.Table.from_batches(held, schema=held[0].schema))
        if cdc is not False:
            writer.add_key_value_metadata({"content_defined_chunking": json.dumps(cdc)})


#: the most stubs one chunk of ``save_stubs``' worker processes reads back whole
WHOLE_CHUNK = 1_000


def _whole_chunk(job: tuple[str, list[dict[str, Any]], dict[str, Response], list[str], tuple[str, ...] | None]
                 ) -> list[dict[str, Any]]:
    """A chunk of stubs read back whole in a worker process (``columns``: only those)."""
    folder, stubs, by_id, round_names, columns = job
    rounds = worker_rounds(folder)
    out = []
    for stub in stubs:
        pair = cast(dict[str, Any], whole_pair(stub, rounds, by_id, round_names))
        out.append(pair if columns is None else {k: pair[k] for k in columns})
    return out


def save_stubs(out_dir: Path, rows_path: Path, train: Columns, test: Columns, card: str, rounds: Rounds,
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

    def rows(stubs: Columns, columns: tuple[str, ...] | None = None) -> Iterator[dict[str, Any]]:
        jobs = ((str(rounds.dir), part, {s["rejected_id"]: by_id[s["rejected_id"]] for s in part if s["rejected_id"] in by_id},
                 round_names, columns) for part in (stubs.rows(k, k + WHOLE_CHUNK) for k in range(0, len(stubs), WHOLE_CHUNK)))
        for found in ordered_map(_whole_chunk, jobs, workers):
            yield from found

    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for name, stubs in (("train", train), ("test", test)):
            write_split(tmp / f"{name}.parquet", rows(stubs), feats, work)
        write_text(tmp / "README.md", card)
    with atomic_path(rows_path) as tmp:
        write_split(tmp, rows(train, ROW_COLUMNS), type(feats)({k: feats[k] for k in ROW_COLUMNS}), work)
