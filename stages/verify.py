"""verify ROUND: check responses, eliminate failed steps, record contrast steps and chain state
(a chunk of seeds at a time, over the machine's cores: ``ecd.verification.verify_files``)."""

from ecd.params import load_params
from ecd.stage import round_arg, stage
from ecd.verification import verify_files


@stage
def main() -> None:
    params = load_params()
    rnd = round_arg(params)
    metrics = verify_files(rnd, params)
    print(f"verify {rnd}: {metrics['accepted']} accepted; eliminated {metrics['eliminated_by_cause']}")


if __name__ == "__main__":
    main()
