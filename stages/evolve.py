"""evolve ROUND: the teacher rewrites every chain's accepted instruction into a harder one."""

from ecd import layout
from ecd.backends import make_backend
from ecd.evolve import evolve_round
from ecd.params import load_params
from ecd.rounds import Rounds, bare, chain_ref
from ecd.stage import round_arg, stage, write_outputs


@stage
def main() -> None:
    params = load_params()
    rnd = round_arg(params, evolving=True)
    state = Rounds().state(params.rounds[rnd].prev)
    backend = make_backend(params.teacher)
    candidates, chains, metrics = evolve_round(state, params.evolve, backend, rnd, int(rnd[1:]), judge=params.judge is not None)
    write_outputs({layout.round_file(rnd, "instructions.jsonl"): [bare(c) for c in candidates],
                   layout.round_file(rnd, "chains.jsonl"): [chain_ref(c) for c in chains]},
                  layout.round_metrics(rnd, "evolve"), metrics,
                  f"evolve {rnd}: {metrics['evolved']}/{metrics['chains']} chains evolved; "
                  f"eliminated {metrics['eliminated_by_cause']}")


if __name__ == "__main__":
    main()
