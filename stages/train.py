"""train: SFT on the chosen answers, then preference training (DPO/RPO/SLiC/IPO) with TRL."""

import json
import shutil

from ecd import layout
from ecd.pairing import load_pairs
from ecd.params import load_params
from ecd.records import write_json
from ecd.stage import stage
from ecd.training import fits, quiet_training_logs, train_dpo, train_sft, use_plain_lm_head_for_small_vocab


@stage
def main() -> None:
    params = load_params()
    quiet_training_logs()
    use_plain_lm_head_for_small_vocab()
    from transformers import AutoTokenizer, set_seed

    set_seed(params.train.seed)
    base = layout.MODELS / "base"
    tok = AutoTokenizer.from_pretrained(base)
    rows = load_pairs(layout.PAIRS, "train").to_list()
    kept = [r for r in rows if fits(tok, r, params.train.max_length)]
    print(f"train: {len(kept)} of {len(rows)} pairs fit in {params.train.max_length} tokens")
    sft_rows = list({json.dumps([r["prompt"], r["chosen"]]): r for r in kept}.values())
    sft_curve = train_sft(base, sft_rows, params.train, layout.MODELS / "sft", layout.WORK)
    dpo_curve = train_dpo(layout.MODELS / "sft", kept, params.train, layout.MODELS / "dpo", layout.WORK)
    shutil.rmtree(layout.WORK, ignore_errors=True)
    write_json(layout.PLOTS / "sft.json", sft_curve)
    write_json(layout.PLOTS / "dpo.json", dpo_curve)
    last = lambda curve, k: round(curve[-1][k], 4) if curve and k in curve[-1] else None  # noqa: E731
    write_json(
        layout.METRICS / "train.json",
        {
            "pairs": len(kept),
            "pairs_too_long": len(rows) - len(kept),
            "sft_rows": len(sft_rows),
            "sft_final_loss": last(sft_curve, "loss"),
            "dpo_final_loss": last(dpo_curve, "loss"),
            "dpo_final_reward_accuracy": last(dpo_curve, "rewards/accuracies"),
            "dpo_final_reward_margin": last(dpo_curve, "rewards/margins"),
        },
    )


if __name__ == "__main__":
    main()
