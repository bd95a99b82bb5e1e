"""sample ROUND: the teacher answers every instruction of the round (adaptation)."""

from ecd import layout
from ecd.backends import make_backend
from ecd.params import load_params
from ecd.records import read_jsonl, write_json, write_jsonl
from ecd.sampling import sample_responses
from ecd.stage import round_arg, stage


@stage
def main() -> None:
    params = load_params()
    rnd = round_arg(params)
    instructions = read_jsonl(layout.round_file(rnd, "instructions.jsonl"))
    backend = make_backend(params.teacher)
    responses, stats = sample_responses(instructions, backend, params.sample.n, params.teacher.seed, rnd)
    write_jsonl(layout.round_file(rnd, "responses.jsonl"), responses)
    metrics = {"responses": len(responses), "calls": stats.calls, "cache_hits": stats.hits,
               "cache_misses": stats.misses, "completion_tokens": stats.completion_tokens}
    write_json(layout.round_metrics(rnd, "sample"), metrics)
    print(f"sample {rnd}: {len(responses)} responses; cache {stats.hits} hits, {stats.misses} misses")


if __name__ == "__main__":
    main()
