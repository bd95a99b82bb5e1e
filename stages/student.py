"""student: build the tiny student (a BPE tokenizer trained on the training seeds' text, seeded weights)."""

from ecd import layout
from ecd.params import Params, load_params
from ecd.records import write_json
from ecd.rounds import Rounds
from ecd.split import test_roots
from ecd.stage import stage
from ecd.student import build_student, copy_student


def training_texts(params: Params) -> list[str]:
    """Every instruction and answer of every round, from the seeds the split puts in train."""
    held_out = test_roots()
    texts = []
    rounds = Rounds()
    for rnd in params.round_names:
        texts += [i["text"] for i in rounds.instructions(rnd) if i["root_id"] not in held_out]
        texts += [s["response"]["text"] for s in rounds.state(rnd) if s["root_id"] not in held_out]
    return texts


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
