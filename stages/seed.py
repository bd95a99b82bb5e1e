"""seed: read the seed set named in params and write the round-0 instruction records."""

from ecd import layout
from ecd.params import load_params
from ecd.records import write_jsonl
from ecd.seeds import load_seeds
from ecd.stage import stage


@stage
def main() -> None:
    params = load_params()
    seeds = load_seeds(params.seed)
    n = write_jsonl(layout.round_file("r0", "instructions.jsonl"), seeds)
    print(f"seed: {n} seed instructions from {params.seed.source}")


if __name__ == "__main__":
    main()
