"""pair: contrast pairs from every round's accepted steps, split by seed, saved as Parquet."""

from ecd import layout
from ecd.pairing import build_pairs, dataset_card, save_pairs
from ecd.params import load_params
from ecd.records import content_id, read_jsonl, write_json
from ecd.stage import stage


@stage
def main() -> None:
    params = load_params()
    steps = [s for rnd in params.rounds for s in read_jsonl(layout.round_file(rnd, "steps.jsonl"))]
    train, test, metrics = build_pairs(steps, params.pair)
    teachers = sorted({s["chosen"]["model"] for s in steps}) or ["(none)"]
    data_params = params.model_dump(include={"seed", "teacher", "evolve", "sample", "verify", "pair", "rounds"})
    card = dataset_card(metrics, ", ".join(teachers), content_id(data_params))
    save_pairs(layout.PAIRS, train, test, card)
    write_json(layout.METRICS / "pair.json", metrics)
    print(f"pair: {metrics['train_pairs']} train and {metrics['test_pairs']} test pairs; dropped {metrics['dropped_by_cause']}")


if __name__ == "__main__":
    main()
