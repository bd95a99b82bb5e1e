"""sample ROUND: the teacher answers every instruction of the round (adaptation)."""

from ecd import layout
from ecd.backends import make_backend
from ecd.params import load_params
from ecd.rounds import Rounds
from ecd.sampling import sample_responses
from ecd.stage import round_arg, stage, write_outputs


@stage
def main() -> None:
    params = load_params()
    rnd = round_arg(params)
    instructions = Rounds().instructions(rnd)
    backend = make_backend(params.teacher)
    responses, stats = sample_responses(instructions, backend, params.sample.n, params.teacher.seed, rnd)
    cut = sum(r["finish_reason"] == "length" for r in responses)
    write_outputs({layout.round_file(rnd, "responses.jsonl"): responses}, layout.round_metrics(rnd, "sample"),
                  {"responses": len(responses), "cut_at_max_tokens": cut, **stats.metrics()},
                  f"sample {rnd}: {len(responses)} responses ({cut} cut at max_new_tokens); cache {stats.hits} hits, "
                  f"{stats.misses} misses; {stats.failed} failed, {stats.rejected} rejected")


if __name__ == "__main__":
    main()
