"""student: build the tiny student (tokenizer trained on the train pairs' text, seeded weights)."""

from ecd import layout
from ecd.pairing import load_pairs
from ecd.params import load_params
from ecd.records import write_json
from ecd.stage import stage
from ecd.student import build_student, copy_student


@stage
def main() -> None:
    params = load_params()
    if params.student.model:
        info = copy_student(params.student, layout.MODELS / "base")
    else:
        train = load_pairs(layout.PAIRS, "train")
        texts = [m["content"] for col in ("prompt", "chosen", "rejected") for msgs in train[col] for m in msgs]
        info = build_student(texts, params.student, layout.MODELS / "base")
    write_json(layout.METRICS / "student.json", info)
    print(f"student: {info['parameters']:,} parameters, vocabulary {info['vocab_size']}")


if __name__ == "__main__":
    main()
