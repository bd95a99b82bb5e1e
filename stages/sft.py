"""sft: supervised fine-tuning of the student on every verified teacher answer of the training seeds."""

from ecd import layout
from ecd.errors import EcdError
from ecd.params import load_params
from ecd.records import write_json
from ecd.rounds import Rounds
from ecd.split import test_roots
from ecd.stage import stage, timed
from ecd.tracking import no_curves
from ecd.training import copy_model, fits, is_main_process, prepare_training, sft_order, train_sft, verified_answers


@stage
def main() -> None:
    params = load_params()
    if params.train.sft.steps == 0:
        copy_model(layout.MODELS / "base", layout.MODELS / "sft")
        no_curves(layout.LIVE / "sft")
        write_json(layout.METRICS / "sft.json", {"rows": 0, "rows_too_long": 0, "steps": 0, "final_loss": None})
        print("sft: train.sft.steps is 0: the student is copied unchanged")
        return
    tok = prepare_training(params.train, layout.MODELS / "base")
    rounds = Rounds()
    r0 = rounds.state("r0")
    steps = [s for rnd in params.rounds for s in rounds.steps(rnd)]
    rows = verified_answers(r0, steps, test_roots())
    kept = [r for r in rows if fits(tok, r, params.train.max_length)]
    print(f"sft: {len(kept)} of {len(rows)} verified answers fit in {params.train.max_length} tokens")
    if not kept:
        raise EcdError(f"no verified answers within train.max_length={params.train.max_length} to fine-tune on")
    ordered = sft_order(tok, kept, params.train)
    with timed("sft training"):
        curve = train_sft(layout.MODELS / "base", ordered, params.train, layout.MODELS / "sft", layout.WORK / "sft",
                          live=layout.LIVE / "sft")
    if is_main_process():
        write_json(layout.METRICS / "sft.json", {"rows": len(kept), "rows_too_long": len(rows) - len(kept),
                                                 "steps": len(curve), "final_loss": round(curve[-1]["loss"], 4)})
    print(f"sft: {len(curve)} steps")


if __name__ == "__main__":
    main()
