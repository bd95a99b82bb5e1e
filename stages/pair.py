"""pair: preference pairs from every round's accepted steps by the strategies in params, split by
seed, saved as Parquet with a dataset card."""

from ecd import layout
from ecd.backends import make_backend
from ecd.pairing import build_pairs, weak_instructions
from ecd.pairs import dataset_card, save_pairs, save_rows
from ecd.params import load_params
from ecd.records import read_jsonl, write_json
from ecd.sampling import sample_responses
from ecd.split import test_roots
from ecd.stage import stage
from ecd.verification import make_checker, pass_rate


@stage
def main() -> None:
    params = load_params()
    steps = [s for rnd in params.rounds for s in read_jsonl(layout.round_file(rnd, "steps.jsonl"))]
    held_out = test_roots()
    weak = None
    if "model_gap" in params.pair.strategy or "model_gap" in params.pair.match:
        answers, _ = sample_responses(weak_instructions(steps, params.pair), make_backend(params.pair.weak), 1,
                                      params.pair.seed, "weak")
        weak = {a["instruction_id"]: a for a in answers}
    check = make_checker(make_backend(params.judge) if params.judge else None)
    train, test, metrics = build_pairs(steps, params.pair, held_out, check, weak)
    pass_rates = {rnd: round(pass_rate(read_jsonl(layout.round_file(rnd, "verdicts.jsonl"))), 4)
                  for rnd in params.round_names}
    save_pairs(layout.PAIRS, train, test, dataset_card(train, test, metrics, params, pass_rates))
    save_rows(layout.ROWS, train)
    write_json(layout.METRICS / "pair.json", metrics)
    matched = f" on {metrics['matched_rows']} rows matched across {params.pair.match}" if params.pair.match else ""
    print(f"pair: {metrics['train_pairs']} train and {metrics['test_pairs']} test pairs "
          f"{metrics['pairs_by_strategy']}{matched}; dropped {metrics['dropped_by_cause']}")


if __name__ == "__main__":
    main()
