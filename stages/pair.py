"""pair: preference pairs from every round's accepted steps by the strategies in params, split by
seed, saved as Parquet with a dataset card; the steps read a chunk of seeds at a time and the pairs
held without their texts until written (``ecd.pair_stream``)."""

from ecd import layout
from ecd.backends import make_backend
from ecd.pair_stream import build_stubs, save_stubs
from ecd.pairs import dataset_card
from ecd.params import load_params
from ecd.records import write_json
from ecd.rounds import Rounds, seeds_per_chunk
from ecd.sampling import sample_responses
from ecd.schema import Instruction, Response
from ecd.split import test_roots
from ecd.stage import stage
from ecd.verification import make_checker, round_pass_rates
from ecd.workers import worker_count


@stage
def main() -> None:
    params = load_params()
    rounds = Rounds()
    check = make_checker(make_backend(params.judge) if params.judge else None)

    def sample_weak(instructions: list[Instruction]) -> dict[str, Response]:
        answers, _ = sample_responses(instructions, make_backend(params.pair.weak), 1, params.pair.seed, "weak")
        return {a["instruction_id"]: a for a in answers}

    names = list(params.rounds)
    workers = worker_count() if params.judge is None else 1  # a judge's calls stay in this process
    train, test, metrics, weak = build_stubs(rounds, names, params.pair, test_roots(), check, sample_weak, seeds_per_chunk(),
                                             workers)
    card = dataset_card(train, test, metrics, params, round_pass_rates(params.round_names))
    save_stubs(layout.PAIRS, layout.ROWS, train, test, card, rounds, weak, names, layout.WORK / "pair", workers)
    write_json(layout.METRICS / "pair.json", metrics)
    matched = f" on {metrics['matched_rows']} rows matched across {params.pair.match}" if params.pair.match else ""
    print(f"pair: {metrics['train_pairs']} train and {metrics['test_pairs']} test pairs "
          f"{metrics['pairs_by_strategy']}{matched}; dropped {metrics['dropped_by_cause']}")


if __name__ == "__main__":
    main()
