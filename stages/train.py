"""train dpo|control: preference training (DPO/RPO/SLiC/IPO) from the SFT student with TRL, or the
SFT-only control that continues SFT on the same rows for the same steps."""

import sys

from ecd import layout
from ecd.errors import EcdError
from ecd.pairs import load_pairs, load_rows
from ecd.params import load_params
from ecd.records import write_json
from ecd.stage import stage, timed
from ecd.training import fits, is_main_process, preference_order, prepare_training, train_control, train_dpo

RUNS = {"preference": train_dpo, "control": train_control}


@stage
def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else ""
    if name not in RUNS:
        raise EcdError(f"usage: python stages/train.py {{{'|'.join(RUNS)}}} (got {name!r})")
    params = load_params()
    # the control reads the rows alone (prompt, chosen), so that one control serves every negative
    rows = (load_pairs(layout.PAIRS, "train") if name == "preference" else load_rows(layout.ROWS)).to_list()
    tok = prepare_training(params.train, layout.MODELS / "sft")
    kept = [r for r in rows if fits(tok, r, params.train.max_length)]
    print(f"train {name}: {len(kept)} of {len(rows)} rows fit in {params.train.max_length} tokens")
    if not kept:
        raise EcdError(f"no train pairs to learn from ({len(rows)} in {layout.PAIRS}, none within train.max_length="
                       f"{params.train.max_length}); metrics/pair.json says why pairs were dropped")
    order = preference_order(tok, kept, params.train, curriculum=params.pair.curriculum != "none")
    with timed(f"train {name}"):
        curve = RUNS[name](layout.MODELS / "sft", order, params.train, layout.MODELS / name, layout.WORK / name,
                           live=layout.LIVE / name)
    print(f"train {name}: {len(curve)} steps")
    if not is_main_process():
        return
    final = {k.replace("/", "_"): round(v, 4) for k, v in curve[-1].items() if k not in ("step", "epoch")}
    write_json(layout.METRICS / f"{name}.json",
               {"pairs": len(kept), "pairs_too_long": len(rows) - len(kept), "steps": len(curve), "final": final})


if __name__ == "__main__":
    main()
