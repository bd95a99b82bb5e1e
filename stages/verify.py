"""verify ROUND: check responses, eliminate failed steps, record contrast steps and chain state."""

from pathlib import Path
from typing import Any

from ecd import layout
from ecd.backends import make_backend
from ecd.judge import judge_constraints
from ecd.params import load_params
from ecd.rounds import Rounds, state_ref, step_ref
from ecd.stage import round_arg, stage, write_outputs
from ecd.verification import judge_requests, verify_round


@stage
def main() -> None:
    params = load_params()
    rnd = round_arg(params)
    rounds = Rounds()
    instructions, responses = rounds.instructions(rnd), rounds.responses(rnd)
    chains = None if rnd == "r0" else rounds.chains(rnd)
    judged = None
    items = judge_requests(instructions, responses, chains)
    if items and params.judge is not None:
        judged, _ = judge_constraints(make_backend(params.judge), items, description=f"judge {rnd}")
    verdicts, state, steps, metrics = verify_round(instructions, responses, chains, params.verify, judged)
    outputs: dict[Path, list[Any]] = {layout.round_file(rnd, "verdicts.jsonl"): verdicts,
                                      layout.round_file(rnd, "state.jsonl"): [state_ref(s, rnd) for s in state]}
    if chains is not None:
        outputs[layout.round_file(rnd, "steps.jsonl")] = [step_ref(s) for s in steps]
    write_outputs(outputs, layout.round_metrics(rnd, "verify"), metrics,
                  f"verify {rnd}: {metrics['accepted']} accepted; eliminated {metrics['eliminated_by_cause']}")


if __name__ == "__main__":
    main()
