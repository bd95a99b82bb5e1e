"""student: build the tiny student (a BPE tokenizer trained on the training seeds' text, seeded weights)."""

from collections.abc import Iterator

from ecd import layout
from ecd.params import Params, load_params
from ecd.records import write_json
from ecd.rounds import Rounds, seeds_per_chunk
from ecd.split import test_roots
from ecd.stage import stage
from ecd.student import build_student, copy_student


def training_texts(params: Params) -> Iterator[str]:
    """Every instruction and answer of every round, from the seeds the split puts in train, as a
    stream (a round's files are read a chunk of seeds at a time)."""
    held_out = test_roots()
    rounds = Rounds()
    for rnd in params.round_names:
        for chunk in rounds.instruction_chunks(rnd, seeds_per_chunk()):
            yield from (i["text"] for i in chunk if i["root_id"] not in held_out)
        for state in rounds.state_chunks(rnd, seeds_per_chunk()):
            yield from (s["response"]["text"] for s in state if s["root_id"] not in held_out)


@stage
def main() -> None:
    params = load_params()
    if params.student.model:
        info = copy_student(params.student, layout.MODELS / "base")
    else:
        info = build_student(training_texts(params), params.student, layout.MODELS / "base")
    write_json(layout.METRICS / "student.json", info)
    print(f"student: {info['parameters']:,} parameters, vocabulary {info['vocab_size']}")


if __name__ == "__main__":
    main()
