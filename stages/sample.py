"""sample ROUND: the teacher answers every instruction of the round (adaptation), a chunk of seeds
at a time (``ecd.sampling.sample_files``)."""

from ecd.backends import make_backend
from ecd.params import load_params
from ecd.sampling import sample_files
from ecd.stage import round_arg, stage


@stage
def main() -> None:
    params = load_params()
    rnd = round_arg(params)
    m = sample_files(rnd, make_backend(params.teacher), params.sample.n, params.teacher.seed)
    print(f"sample {rnd}: {m['responses']} responses ({m['cut_at_max_tokens']} cut at max_new_tokens); cache "
          f"{m['cache_hits']} hits, {m['cache_misses']} misses; {m['failed_calls']} failed, {m['rejected_calls']} rejected")


if __name__ == "__main__":
    main()
