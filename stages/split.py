"""split: hold out a share of the seeds for testing, once, for every later stage."""

from ecd import layout
from ecd.params import load_params
from ecd.records import read_records
from ecd.schema import State
from ecd.split import make_split, save_split
from ecd.stage import stage


@stage
def main() -> None:
    params = load_params()
    split = make_split(read_records(layout.round_file("r0", "state.jsonl"), State), params.split.test_fraction, params.split.seed)
    save_split(split)
    print(f"split: {len(split['train_roots'])} train and {len(split['test_roots'])} test seeds")


if __name__ == "__main__":
    main()
