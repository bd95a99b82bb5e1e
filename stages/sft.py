"""sft: supervised fine-tuning of the student on every verified teacher answer of the training seeds."""

import time

from ecd import layout
from ecd.errors import EcdError
from ecd.pairing import held_out_roots, verified_answers
from ecd.params import load_params
from ecd.records import read_jsonl, write_json
from ecd.stage import stage
from ecd.training import fits, is_main_process, prepare_training, sft_order, train_sft


@stage
def main() -> None:
    params = load_params()
    tok = prepare_training(params.train)
    r0 = read_jsonl(layout.round_file("r0", "state.jsonl"))
    steps = [s for rnd in params.rounds for s in read_jsonl(layout.round_file(rnd, "steps.jsonl"))]
    rows = verified_answers(r0, steps, held_out_roots(r0, params.pair))
    kept = [r for r in rows if fits(tok, r, params.train.max_length)]
    print(f"sft: {len(kept)} of {len(rows)} verified answers fit in {params.train.max_length} tokens")
    if not kept:
        raise EcdError(f"no verified answers within train.max_length={params.train.max_length} to fine-tune on")
    t0 = time.perf_counter()
    curve = train_sft(layout.MODELS / "base", sft_order(tok, kept, params.train), params.train,
                      layout.MODELS / "sft", layout.WORK / "sft")
    seconds = round(time.perf_counter() - t0, 1)
    if is_main_process():
        write_json(layout.PLOTS / "sft.json", curve)
        write_json(layout.METRICS / "sft.json", {"rows": len(kept), "rows_too_long": len(rows) - len(kept),
                                                 "steps": len(curve), "final_loss": round(curve[-1]["loss"], 4),
                                                 "seconds": seconds})
    print(f"sft: {len(curve)} steps, {seconds} s")


if __name__ == "__main__":
    main()
