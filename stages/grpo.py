"""grpo: online training of the SFT student with GRPO, the constraint checks as rewards, on the
instructions the preference run trains on (docs/training.md)."""

from ecd import layout
from ecd.errors import EcdError
from ecd.grpo import grpo_rows, train_grpo
from ecd.pairs import load_rows
from ecd.params import load_params
from ecd.records import write_json, write_text
from ecd.stage import stage, timed
from ecd.tracking import no_curves
from ecd.training import fits, is_main_process, preference_order, prepare_training


@stage
def main() -> None:
    params = load_params()
    if not params.train.grpo.enabled:
        # the declared outputs, with nothing a loader could take for a model (evaluate.students leaves grpo out)
        layout.MODELS.joinpath("grpo").mkdir(parents=True, exist_ok=True)
        write_text(layout.MODELS / "grpo" / "NOT_TRAINED", "train.grpo.enabled is false: no GRPO run\n")
        no_curves(layout.LIVE / "grpo")
        write_json(layout.METRICS / "grpo.json", {"enabled": False})
        print("grpo: not run (train.grpo.enabled: false)")
        return
    # the rows alone, as the control reads them: with matched rows one GRPO run serves every negative
    pairs = load_rows(layout.ROWS).to_list()
    tok = prepare_training(params.train, layout.MODELS / "sft")
    # the preference run's rows in its order, so that both runs learn from the same instructions
    kept = [r for r in pairs if fits(tok, r, params.train.max_length)]
    order = preference_order(tok, kept, params.train, curriculum=params.pair.curriculum != "none")
    rows = grpo_rows(order, params.train.grpo.max_prompts)
    if not rows:
        raise EcdError(f"no instructions to train on ({len(pairs)} train rows in {layout.ROWS}, none within "
                       f"train.max_length={params.train.max_length})")
    print(f"grpo: {len(rows)} instructions of {len(kept)} pairs, {params.train.grpo.num_generations} answers each")
    with timed("train grpo"):
        curve = train_grpo(layout.MODELS / "sft", rows, params.train, layout.MODELS / "grpo", layout.WORK / "grpo",
                           live=layout.LIVE / "grpo")
    print(f"grpo: {len(curve)} steps")
    if not is_main_process():
        return
    final = {k.replace("/", "_"): round(v, 4) for k, v in curve[-1].items() if k not in ("step", "epoch")}
    write_json(layout.METRICS / "grpo.json", {"instructions": len(rows), "steps": len(curve), "final": final})


if __name__ == "__main__":
    main()
