"""seeds: read the seed set named in params and write the round-0 instruction records."""

from ecd import layout
from ecd.params import load_params
from ecd.seeds import read_seeds
from ecd.stage import stage, write_outputs


@stage
def main() -> None:
    params = load_params()
    seeds, skipped = read_seeds(params.seeds)
    write_outputs({layout.round_file("r0", "instructions.jsonl"): seeds}, layout.METRICS / "seeds.json",
                  {"seeds": len(seeds), "left_out_by_cause": dict(sorted(skipped.items()))},
                  f"seeds: {len(seeds)} seed instructions from {params.seeds.source}; left out {dict(sorted(skipped.items()))}")


if __name__ == "__main__":
    main()
