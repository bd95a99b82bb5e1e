"""sample ROUND: the teacher answers every instruction of the round (adaptation), a chunk of seeds
at a time (``ecd.rounds``), the answers written as each chunk is done."""

from ecd import layout
from ecd.backends import RunStats, apply_failure_policy, make_backend
from ecd.params import load_params
from ecd.records import jsonl_writer, write_json
from ecd.rounds import Rounds, seeds_per_chunk
from ecd.sampling import sample_responses
from ecd.stage import round_arg, stage


@stage
def main() -> None:
    params = load_params()
    rnd = round_arg(params)
    rounds = Rounds()
    rounds.need(rnd, "instructions")
    backend = make_backend(params.teacher)
    calls, count, cut = RunStats(), 0, 0
    with jsonl_writer(layout.round_file(rnd, "responses.jsonl")) as write:
        for instructions in rounds.instruction_chunks(rnd, seeds_per_chunk()):
            responses, stats = sample_responses(instructions, backend, params.sample.n, params.teacher.seed, rnd,
                                                check_failures=False)
            calls.add(stats)
            for r in responses:
                write(r)
            count += len(responses)
            cut += sum(r["finish_reason"] == "length" for r in responses)
        apply_failure_policy(backend, calls, f"sample {rnd}")  # over the round's calls, before the file is in place
    write_json(layout.round_metrics(rnd, "sample"), {"responses": count, "cut_at_max_tokens": cut, **calls.metrics()})
    print(f"sample {rnd}: {count} responses ({cut} cut at max_new_tokens); cache {calls.hits} hits, "
          f"{calls.misses} misses; {calls.failed} failed, {calls.rejected} rejected")


if __name__ == "__main__":
    main()
