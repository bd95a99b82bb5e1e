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

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypedDict, cast

from ecd import layout
from ecd.errors import EcdError
from ecd.records import read_records
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


class Rounds:
    """Reads a run's round files as whole records, each file once (``rounds_dir``: ``data/rounds``)."""

    def __init__(self, rounds_dir: str | Path = layout.ROUNDS) -> None:
        self.dir = Path(rounds_dir)
        self._cache: dict[tuple[str, str], Any] = {}

    def path(self, round_name: str, kind: str) -> Path:
        return self.dir / round_name / f"{kind}.jsonl"

    def _once(self, round_name: str, kind: str, build: Any) -> Any:
        key = (round_name, kind)
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

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
        return cast(list[Instruction], self._once(round_name, "instructions", lambda: [
            self.whole(i) for i in read_records(self.path(round_name, "instructions"), Instruction)]))

    def responses(self, round_name: str) -> list[Response]:
        return cast(list[Response], self._once(round_name, "responses", lambda: read_records(
            self.path(round_name, "responses"), Response)))

    def verdicts(self, round_name: str) -> list[Verdict]:
        return cast(list[Verdict], self._once(round_name, "verdicts", lambda: read_records(
            self.path(round_name, "verdicts"), Verdict)))

    def _by_id(self, round_name: str, kind: str) -> dict[str, Any]:
        rows: Sequence[Any] = self.instructions(round_name) if kind == "instructions" else self.responses(round_name)
        return cast(dict[str, Any], self._once(round_name, f"{kind}-by-id", lambda: {r["id"]: r for r in rows}))

    def _find(self, round_name: str, kind: str, record_id: str, where: Path, line: int) -> Any:
        found = self._by_id(round_name, kind).get(record_id)
        if found is None:
            raise EcdError(f"{where}:{line}: refers to {kind[:-1]} {record_id}, which is not in "
                           f"{self.path(round_name, kind)} (the round's files are from different runs?)")
        return found

    def state(self, round_name: str) -> list[State]:
        """Where every chain (round 0: every seed) stands after ``round_name``, whole."""
        def build() -> list[State]:
            path = self.path(round_name, "state")
            out: list[State] = []
            for line, ref in enumerate(read_records(path, StateRef), 1):
                if "instruction_id" in ref:
                    inst = self._find(round_name, "instructions", ref["instruction_id"], path, line)
                    resp = self._find(round_name, "responses", ref["response_id"], path, line)
                else:
                    inst, resp = self.whole(ref["instruction"]), ref["response"]
                out.append({"chain": ref["chain"], "root_id": ref["root_id"], "round": ref["round"],
                            "instruction": inst, "response": resp})
            return out

        return cast(list[State], self._once(round_name, "state", build))

    def _before(self, round_name: str) -> tuple[dict[str, Instruction], dict[str, Response]]:
        """The instructions and responses of the previous round's state, by id: every chain's parent."""
        prev = previous(round_name)

        def build() -> tuple[dict[str, Instruction], dict[str, Response]]:
            state = self.state(prev)
            return ({s["instruction"]["id"]: s["instruction"] for s in state},
                    {s["response"]["id"]: s["response"] for s in state})

        return cast(tuple[dict[str, Instruction], dict[str, Response]], self._once(prev, "state-by-id", build))

    def chains(self, round_name: str) -> list[Chain]:
        """Every chain's attempt in ``round_name``, with its parent I(t−1) and R(t−1) whole."""
        def build() -> list[Chain]:
            path = self.path(round_name, "chains")
            instructions, responses = self._before(round_name)
            out: list[Chain] = []
            for line, ref in enumerate(read_records(path, ChainRef), 1):
                p = ref["parent"]
                inst, resp = instructions.get(p["instruction_id"]), responses.get(p["response_id"])
                if inst is None or resp is None:
                    raise EcdError(f"{path}:{line}: its parent is not in {self.path(previous(round_name), 'state')}")
                out.append({"chain": ref["chain"], "root_id": ref["root_id"],
                            "parent": {"instruction": inst, "response": resp, "round": p["round"]},
                            "candidate_id": ref["candidate_id"], "eliminated": ref["eliminated"]})
            return out

        return cast(list[Chain], self._once(round_name, "chains", build))

    def steps(self, round_name: str) -> list[Step]:
        """The round's contrast steps (I(t), R(t), R(t−1)), whole."""
        def build() -> list[Step]:
            path = self.path(round_name, "steps")
            _, before = self._before(round_name)
            results = self._once(round_name, "results-by-response", lambda: {
                v["response_id"]: v["results"] for v in self.verdicts(round_name)})
            out: list[Step] = []
            for line, ref in enumerate(read_records(path, StepRef), 1):
                rejected = before.get(ref["rejected_id"])
                if rejected is None or ref["chosen_id"] not in results:
                    raise EcdError(f"{path}:{line}: its rejected answer is not in "
                                   f"{self.path(previous(round_name), 'state')} or its chosen one has no verdict")
                out.append({"chain": ref["chain"], "root_id": ref["root_id"], "round": ref["round"],
                            "instruction": self._find(round_name, "instructions", ref["instruction_id"], path, line),
                            "chosen": self._find(round_name, "responses", ref["chosen_id"], path, line),
                            "rejected": rejected, "chosen_results": results[ref["chosen_id"]],
                            "rejected_results": ref["rejected_results"], "new_constraints": ref["new_constraints"]})
            return out

        return cast(list[Step], self._once(round_name, "steps", build))

    def read(self, round_name: str, kind: str) -> list[Any]:
        """One file of a round as whole records (``kind``: instructions, responses, verdicts, chains, state, steps)."""
        readers: dict[str, Callable[[str], Sequence[Any]]] = {
            "instructions": self.instructions, "responses": self.responses, "verdicts": self.verdicts,
            "chains": self.chains, "state": self.state, "steps": self.steps}
        if kind not in readers:
            raise EcdError(f"a round holds {', '.join(readers)}; not {kind!r}")
        return list(readers[kind](round_name))
