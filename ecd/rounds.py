"""A round's files: what the round made in full, everything else by reference.

Each round's folder (``data/rounds/<round>/``) holds the records the round made — its instructions
I(t), the teacher's responses, their verdicts — in full, once. What the round decided about them —
where each chain stands (``state``), what each chain tried (``chains``), the contrast steps
(``steps``) — names those records by id instead of copying them: on the default run that copying
was two thirds of a round's bytes, and the share grows with the chains. Three more copies go: only
round 0's instructions hold the seed's reference answer and source (an evolved instruction gets them
back from its seed when read), and a step's verdict on its chosen answer is the chosen response's
verdict. Lines are compact JSON (no spaces after separators).

One rule keeps each stage's inputs to its own round and the one before (what ``dvc.yaml`` can list
as a stage's dependencies): a state entry refers to the round's own files when its chain advanced
in the round, and holds its instruction and response in full when the chain kept an older one.

On disk (``…Ref``) and in memory (:mod:`ecd.schema`'s ``State``, ``Chain``, ``Step``: every record
whole) are two shapes of one record; :class:`Rounds` reads the first as the second, so stages,
``ecd inspect`` and ``ecd.read_round`` see whole records, as they always have.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypedDict, cast

from ecd import layout
from ecd.errors import EcdError
from ecd.record_index import RecordFile
from ecd.records import iter_jsonl, read_records
from ecd.schema import Chain, ConstraintResult, Instruction, Response, State, Step, Verdict


class StateRef(TypedDict, total=False):
    """A state entry on disk: ``instruction_id`` and ``response_id`` in this round's files, or, for a
    chain that kept an older instruction, ``instruction`` and ``response`` in full."""

    chain: str | None
    root_id: str
    round: int
    instruction_id: str
    response_id: str
    instruction: Instruction
    response: Response


class ParentRef(TypedDict):
    instruction_id: str
    response_id: str
    round: int


class ChainRef(TypedDict):
    """A chain's attempt on disk: its parent is the previous round's state entry, by id."""

    chain: str
    root_id: str
    parent: ParentRef
    candidate_id: str | None
    eliminated: str | None


class StepRef(TypedDict):
    """A contrast step on disk: I(t) and R(t) in this round's files, R(t−1) in the previous round's state."""

    chain: str
    root_id: str
    round: int
    instruction_id: str
    chosen_id: str
    rejected_id: str
    rejected_results: list[ConstraintResult]
    new_constraints: list[str]


#: an instruction's fields that are its seed's: held by round 0's instructions alone
FROM_SEED = ("reference", "source")


def round_index(round_name: str) -> int:
    """``r3`` → 3 (round names are ``r`` and the round's number, as ``params.yaml`` gives them)."""
    if not (round_name.startswith("r") and round_name[1:].isdigit()):
        raise EcdError(f"a round is named r<number> (r0, r1, ...); not {round_name!r}")
    return int(round_name[1:])


def previous(round_name: str) -> str:
    index = round_index(round_name)
    if index == 0:
        raise EcdError("round r0 (the seeds) has no round before it")
    return f"r{index - 1}"


def bare(instruction: Instruction) -> Instruction:
    """An instruction as a round file holds it: an evolved one without what its seed holds (:data:`FROM_SEED`)."""
    if instruction["round"] == 0:
        return instruction
    return cast(Instruction, {k: v for k, v in instruction.items() if k not in FROM_SEED})


def state_ref(entry: State, round_name: str) -> StateRef:
    """``entry`` as round ``round_name``'s state file holds it."""
    head: StateRef = {"chain": entry["chain"], "root_id": entry["root_id"], "round": entry["round"]}
    if entry["instruction"]["round"] == round_index(round_name):  # the round's own records
        return {**head, "instruction_id": entry["instruction"]["id"], "response_id": entry["response"]["id"]}
    return {**head, "instruction": bare(entry["instruction"]), "response": entry["response"]}


def chain_ref(chain: Chain) -> ChainRef:
    parent = chain["parent"]
    return {"chain": chain["chain"], "root_id": chain["root_id"],
            "parent": {"instruction_id": parent["instruction"]["id"], "response_id": parent["response"]["id"],
                       "round": parent["round"]},
            "candidate_id": chain["candidate_id"], "eliminated": chain["eliminated"]}


def step_ref(step: Step) -> StepRef:
    return {"chain": step["chain"], "root_id": step["root_id"], "round": step["round"],
            "instruction_id": step["instruction"]["id"], "chosen_id": step["chosen"]["id"],
            "rejected_id": step["rejected"]["id"], "rejected_results": step["rejected_results"],
            "new_constraints": step["new_constraints"]}


def chunked(records: Iterator[Any], per_chunk: int, key: Callable[[Any], str]) -> Iterator[list[Any]]:
    """Consecutive records in lists of at most ``per_chunk`` distinct ``key`` values (a seed's
    chains stay together)."""
    chunk: list[Any] = []
    keys: set[str] = set()
    for rec in records:
        k = key(rec)
        if k not in keys and len(keys) == per_chunk:
            yield chunk
            chunk, keys = [], set()
        keys.add(k)
        chunk.append(rec)
    if chunk:
        yield chunk


def _by_seed(refs: Iterator[tuple[int, Any]], per_chunk: int) -> Iterator[list[tuple[int, Any]]]:
    """(line, reference) pairs of a round file, ``per_chunk`` seeds at a time."""
    return chunked(refs, per_chunk, lambda item: item[1]["root_id"])


def seeds_per_chunk() -> int:
    """The most seeds a data stage holds at once (``ECD_CHUNK_SEEDS``, default 2,000: about 16,000
    chains at the default 8 a seed). Outputs do not depend on it; only memory and speed do."""
    import os

    value = os.environ.get("ECD_CHUNK_SEEDS", "2000")
    if not value.isdigit() or int(value) < 1:
        raise EcdError(f"ECD_CHUNK_SEEDS={value!r}: expected a whole number of seeds, 1 or more")
    return int(value)


def chunk_seeds(rounds: "Rounds", workers: int | None = None) -> int:
    """Seeds a chunk: :func:`seeds_per_chunk` at most, and few enough that every worker
    (``workers``, by default ``ecd.workers.worker_count``) gets about four chunks of the run's seeds."""
    from ecd.workers import worker_count

    seeds = len(rounds.index("r0", "instructions", "root_id"))
    return max(1, min(seeds_per_chunk(), -(-seeds // (4 * (workers or worker_count())))))


#: a process's readers of round folders (with the files' identities when it was made), kept across
#: the chunks it is sent
_WORKER_ROUNDS: dict[str, tuple[tuple[Any, ...], "Rounds"]] = {}


def _identity(folder: Path) -> tuple[Any, ...]:
    """What tells a folder's round files apart from the ones an earlier reader indexed: each file's
    inode, size and modification time (a stage replaces a file whole, by renaming a new one)."""
    import os

    out = []
    for sub in sorted(os.scandir(folder), key=lambda e: e.name) if folder.is_dir() else []:
        if sub.is_dir():
            for f in sorted(os.scandir(sub.path), key=lambda e: e.name):
                if f.name.endswith(".jsonl") and f.is_file():
                    st = f.stat()
                    out.append((sub.name, f.name, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


def worker_rounds(folder: str | Path) -> "Rounds":
    """The reader of ``folder`` that chunks run in this process share: a worker process (``ecd.workers``)
    is sent references, and reads the records whole itself, building each index it needs once (a
    new reader when the folder's files have been replaced since)."""
    key, identity = str(folder), _identity(Path(folder))
    found = _WORKER_ROUNDS.get(key)
    if found is None or found[0] != identity:
        found = _WORKER_ROUNDS[key] = (identity, Rounds(key))
    return found[1]


def share_rounds(rounds: "Rounds") -> None:
    """Make ``rounds`` the reader that chunks run in this process use (one process: no second set of indexes)."""
    _WORKER_ROUNDS[str(rounds.dir)] = (_identity(rounds.dir), rounds)


class Rounds:
    """Reads a run's round files as whole records (``rounds_dir``: ``data/rounds``): a file at once
    (``state``, ``chains``, ``steps``, ...) or in chunks of seeds (``…_chunks``), each record looked
    up through the :class:`RecordFile` index of the file that holds it."""

    def __init__(self, rounds_dir: str | Path = layout.ROUNDS) -> None:
        self.dir = Path(rounds_dir)
        self._cache: dict[tuple[str, str], Any] = {}
        self._paths: dict[tuple[str, str], Path] = {}  # a lookup builds several per record

    def path(self, round_name: str, kind: str) -> Path:
        found = self._paths.get((round_name, kind))
        if found is None:
            found = self._paths[(round_name, kind)] = self.dir / round_name / f"{kind}.jsonl"
        return found

    def _once(self, round_name: str, kind: str, build: Any) -> Any:
        key = (round_name, kind)
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def need(self, round_name: str, *kinds: str) -> None:
        """The error for the first of the round's files that is not there (it names the stage that makes it)."""
        for kind in kinds:
            if not self.path(round_name, kind).exists():
                raise layout.missing_input(self.path(round_name, kind))

    def index(self, round_name: str, kind: str, key: str = "id") -> RecordFile:
        """The index of one of the round's files by ``key`` (built once)."""
        found = self._cache.get((round_name, f"{kind}@{key}"))
        if found is not None:
            return cast(RecordFile, found)
        path = self.path(round_name, kind)
        if not path.exists():
            raise layout.missing_input(path)
        return cast(RecordFile, self._once(round_name, f"{kind}@{key}", lambda: RecordFile(path, key)))

    def seeds(self) -> dict[str, dict[str, Any]]:
        """What each seed gives every instruction of its chains (:data:`FROM_SEED`), by root id."""
        return cast(dict[str, dict[str, Any]], self._once("r0", "seeds", lambda: {
            i["root_id"]: {k: i[k] for k in FROM_SEED}  # type: ignore[literal-required]
            for i in read_records(self.path("r0", "instructions"), Instruction)}))

    def whole(self, instruction: Instruction) -> Instruction:
        """An instruction as read from a round file, with its seed's reference answer and source."""
        if instruction["round"] == 0:
            return instruction
        seeds = self.seeds()
        if instruction["root_id"] not in seeds:
            raise EcdError(f"instruction {instruction['id']} of round {instruction['round']}: its seed "
                           f"{instruction['root_id']} is not in {self.path('r0', 'instructions')}")
        return cast(Instruction, {**instruction, **seeds[instruction["root_id"]]})

    def instructions(self, round_name: str) -> list[Instruction]:
        return [i for chunk in self.instruction_chunks(round_name, 1 << 62) for i in chunk]

    def instruction(self, round_name: str, instruction_id: str) -> Instruction:
        """One instruction of the round by id, whole."""
        return cast(Instruction, self._find(round_name, "instructions", instruction_id,
                                            self.path(round_name, "instructions"), 0))

    def instruction_chunks(self, round_name: str, per_chunk: int) -> Iterator[list[Instruction]]:
        """The round's instructions in file order, whole, ``per_chunk`` seeds at a time."""
        rows = (self.whole(cast(Instruction, r)) for _, r in iter_jsonl(self.path(round_name, "instructions")))
        return chunked(rows, per_chunk, lambda i: i["root_id"])

    def responses(self, round_name: str) -> list[Response]:
        return read_records(self.path(round_name, "responses"), Response)

    def answers(self, round_name: str, instruction_id: str) -> list[Response]:
        """The responses to one instruction of the round, in file order."""
        return cast(list[Response], self.index(round_name, "responses", "instruction_id").all(instruction_id))

    def verdicts(self, round_name: str) -> list[Verdict]:
        return read_records(self.path(round_name, "verdicts"), Verdict)

    def _find(self, round_name: str, kind: str, record_id: str, where: Path, line: int) -> Any:
        found = self.index(round_name, kind).get(record_id)
        if found is None:
            raise EcdError(f"{where}:{line}: refers to {kind[:-1]} {record_id}, which is not in "
                           f"{self.path(round_name, kind)} (the round's files are from different runs?)")
        return self.whole(found) if kind == "instructions" else found

    def _state_entry(self, round_name: str, ref: StateRef, where: Path, line: int) -> State:
        if "instruction_id" in ref:
            inst = self._find(round_name, "instructions", ref["instruction_id"], where, line)
            resp = self._find(round_name, "responses", ref["response_id"], where, line)
        else:
            inst, resp = self.whole(ref["instruction"]), ref["response"]
        return {"chain": ref["chain"], "root_id": ref["root_id"], "round": ref["round"], "instruction": inst,
                "response": resp}

    def state(self, round_name: str) -> list[State]:
        """Where every chain (round 0: every seed) stands after ``round_name``, whole."""
        return [s for chunk in self.state_chunks(round_name, 1 << 62) for s in chunk]

    def state_chunks(self, round_name: str, per_chunk: int, by_chain: bool = False) -> Iterator[list[State]]:
        """The state ``per_chunk`` seeds at a time; ``by_chain``: in the order of the chains evolution
        forks from it (round 0's seeds by id, as ``ecd.evolve.fork`` sorts them; later rounds' files
        are in that order already), so that evolving the chunks one by one gives one sorted round."""
        return ([self.whole_state(round_name, r, line) for line, r in refs]
                for refs in self.state_ref_chunks(round_name, per_chunk, by_chain))

    def state_ref_chunks(self, round_name: str, per_chunk: int, by_chain: bool = False
                         ) -> Iterator[list[tuple[int, StateRef]]]:
        """:meth:`state_chunks`' references (with their lines): what a worker process needs to read
        those entries whole itself (:meth:`whole_state`)."""
        refs: Iterator[tuple[int, Any]] = iter(iter_jsonl(self.path(round_name, "state")))
        if by_chain and round_name == "r0":
            refs = iter(sorted(refs, key=lambda item: str(item[1]["root_id"])))
        return _by_seed(refs, per_chunk)

    def whole_state(self, round_name: str, ref: StateRef, line: int) -> State:
        """A state entry of ``round_name`` from its reference (``line``: where it is, for errors), whole."""
        return self._state_entry(round_name, ref, self.path(round_name, "state"), line)

    def _parent(self, round_name: str, chain: str, root_id: str, where: Path, line: int) -> State:
        """The previous round's state entry of ``chain`` (round 0's of its seed), whole."""
        prev = previous(round_name)
        key = ("root_id", root_id) if prev == "r0" else ("chain", chain)
        found = self.index(prev, "state", key[0]).get(key[1])
        if found is None:
            raise EcdError(f"{where}:{line}: its chain {chain} has no entry in {self.path(prev, 'state')}")
        return self._state_entry(prev, cast(StateRef, found), self.path(prev, "state"), 0)

    def chains(self, round_name: str) -> list[Chain]:
        """Every chain's attempt in ``round_name``, with its parent I(t−1) and R(t−1) whole."""
        return [c for chunk in self.chain_chunks(round_name, 1 << 62) for c in chunk]

    def chain_chunks(self, round_name: str, per_chunk: int) -> Iterator[list[Chain]]:
        return ([self.whole_chain(round_name, r, line) for line, r in refs]
                for refs in self.chain_ref_chunks(round_name, per_chunk))

    def chain_ref_chunks(self, round_name: str, per_chunk: int) -> Iterator[list[tuple[int, ChainRef]]]:
        """The round's chain references (with their lines), ``per_chunk`` seeds at a time: what a
        worker process needs to read those chains whole itself (:meth:`whole_chain`)."""
        return _by_seed(iter_jsonl(self.path(round_name, "chains")), per_chunk)

    def whole_chain(self, round_name: str, ref: ChainRef, line: int) -> Chain:
        """A chain's attempt in ``round_name`` from its reference, with its parent I(t−1) and R(t−1) whole."""
        path = self.path(round_name, "chains")
        parent = self._parent(round_name, ref["chain"], ref["root_id"], path, line)
        p = ref["parent"]
        if (parent["instruction"]["id"], parent["response"]["id"]) != (p["instruction_id"], p["response_id"]):
            raise EcdError(f"{path}:{line}: its parent is not the one in {self.path(previous(round_name), 'state')}")
        return {"chain": ref["chain"], "root_id": ref["root_id"],
                "parent": {"instruction": parent["instruction"], "response": parent["response"], "round": p["round"]},
                "candidate_id": ref["candidate_id"], "eliminated": ref["eliminated"]}

    def steps(self, round_name: str) -> list[Step]:
        """The round's contrast steps (I(t), R(t), R(t−1)), whole."""
        return [s for chunk in self.step_chunks(round_name, 1 << 62) for s in chunk]

    def step(self, round_name: str, chain: str) -> Step:
        """The step ``chain`` took in ``round_name``, whole."""
        found = self.index(round_name, "steps", "chain").get(chain)
        if found is None:
            raise EcdError(f"{self.path(round_name, 'steps')}: no step of chain {chain}")
        return self.whole_step(round_name, cast(StepRef, found), 0)

    def response(self, response_id: str, rounds: Sequence[str]) -> Response:
        """A response by id from the first of ``rounds`` whose responses hold it."""
        for r in rounds:
            found = self.index(r, "responses").get(response_id)
            if found is not None:
                return cast(Response, found)
        raise EcdError(f"response {response_id} is in none of the responses of rounds {', '.join(rounds)}")

    def whole_step(self, round_name: str, ref: StepRef, line: int) -> Step:
        """A step of ``round_name`` from its reference (``line``: where it is, for errors), whole."""
        path = self.path(round_name, "steps")
        rejected = self._parent(round_name, ref["chain"], ref["root_id"], path, line)["response"]
        verdict = self.index(round_name, "verdicts", "response_id").get(ref["chosen_id"])
        if rejected["id"] != ref["rejected_id"] or verdict is None:
            raise EcdError(f"{path}:{line}: its rejected answer is not the chain's in "
                           f"{self.path(previous(round_name), 'state')}, or its chosen one has no verdict")
        return {"chain": ref["chain"], "root_id": ref["root_id"], "round": ref["round"],
                "instruction": self._find(round_name, "instructions", ref["instruction_id"], path, line),
                "chosen": self._find(round_name, "responses", ref["chosen_id"], path, line),
                "rejected": rejected, "chosen_results": verdict["results"],
                "rejected_results": ref["rejected_results"], "new_constraints": ref["new_constraints"]}

    def step_chunks(self, round_name: str, per_chunk: int) -> Iterator[list[Step]]:
        return ([self.whole_step(round_name, r, line) for line, r in refs]
                for refs in self.step_ref_chunks(round_name, per_chunk))

    def step_ref_chunks(self, round_name: str, per_chunk: int) -> Iterator[list[tuple[int, StepRef]]]:
        """The round's step references (with their lines), ``per_chunk`` seeds at a time: what a
        worker process needs to read those steps whole itself (``whole_step``)."""
        return _by_seed(iter_jsonl(self.path(round_name, "steps")), per_chunk)

    def read(self, round_name: str, kind: str) -> list[Any]:
        """One file of a round as whole records (``kind``: instructions, responses, verdicts, chains, state, steps)."""
        readers: dict[str, Callable[[str], Sequence[Any]]] = {
            "instructions": self.instructions, "responses": self.responses, "verdicts": self.verdicts,
            "chains": self.chains, "state": self.state, "steps": self.steps}
        if kind not in readers:
            raise EcdError(f"a round holds {', '.join(readers)}; not {kind!r}")
        return list(readers[kind](round_name))
