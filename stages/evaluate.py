"""evaluate: base, SFT and DPO students answer the held-out instructions; the verifier scores them."""

from ecd import layout
from ecd.evaluation import answer, held_out_prompts, score
from ecd.pairing import load_pairs
from ecd.params import load_params
from ecd.records import write_json, write_jsonl
from ecd.stage import stage

MODELS = ("base", "sft", "dpo")


@stage
def main() -> None:
    params = load_params()
    prompts = held_out_prompts(load_pairs(layout.PAIRS, "test").to_list())
    metrics = {}
    for name in MODELS:
        responses = answer(layout.MODELS / name, prompts, params.evaluate, name)
        items = [{**p, "response": r} for p, r in zip(prompts, responses)]
        summary, results = score(items)
        metrics[name] = {k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()}
        write_jsonl(layout.EVAL / f"{name}.jsonl", results["strict"])
        print(f"evaluate {name}: prompt-level strict {summary['prompt_strict']:.3f}, loose {summary['prompt_loose']:.3f}")
    write_json(layout.METRICS / "evaluate.json", metrics)


if __name__ == "__main__":
    main()
