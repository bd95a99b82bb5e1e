"""evolve ROUND: the teacher rewrites every chain's accepted instruction into a harder one (a chunk
of seeds at a time, planned over the machine's cores: ``ecd.evolve_stream.evolve_files``)."""

from ecd.backends import make_backend
from ecd.evolve_stream import evolve_files
from ecd.params import load_params
from ecd.stage import round_arg, stage


@stage
def main() -> None:
    params = load_params()
    rnd = round_arg(params, evolving=True)
    metrics = evolve_files(rnd, params.rounds[rnd].prev, params.evolve, make_backend(params.teacher),
                           params.judge is not None)
    print(f"evolve {rnd}: {metrics['evolved']}/{metrics['chains']} chains evolved; "
          f"eliminated {metrics['eliminated_by_cause']}")


if __name__ == "__main__":
    main()
