"""pair: preference pairs from every round's accepted steps by the strategies in params, split by
seed, saved as Parquet with a dataset card."""

from ecd import layout
from ecd.backends import make_backend
from ecd.pairing import build_pairs, weak_answers
from ecd.pairs import dataset_card, save_pairs, save_rows
from ecd.params import load_params
from ecd.records import write_json
from ecd.rounds import Rounds
from ecd.split import test_roots
from ecd.stage import stage
from ecd.verification import make_checker, round_pass_rates


@stage
def main() -> None:
    params = load_params()
    rounds = Rounds()
    steps = [s for rnd in params.rounds for s in rounds.steps(rnd)]
    check = make_checker(make_backend(params.judge) if params.judge else None)
    train, test, metrics = build_pairs(steps, params.pair, test_roots(), check, weak_answers(steps, params.pair, check))
    card = dataset_card(train, test, metrics, params, round_pass_rates(params.round_names))
    save_pairs(layout.PAIRS, train, test, card)
    save_rows(layout.ROWS, train)
    write_json(layout.METRICS / "pair.json", metrics)
    matched = f" on {metrics['matched_rows']} rows matched across {params.pair.match}" if params.pair.match else ""
    print(f"pair: {metrics['train_pairs']} train and {metrics['test_pairs']} test pairs "
          f"{metrics['pairs_by_strategy']}{matched}; dropped {metrics['dropped_by_cause']}")


if __name__ == "__main__":
    main()
