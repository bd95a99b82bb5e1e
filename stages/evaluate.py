"""evaluate: the base, SFT, SFT-only control and preference-trained students answer the sets of
``evaluate.sets`` (the held-out instructions, IFEval's 541 prompts, IFBench's 294), scored by the
constraint library, every score and every difference between students with its 95 % interval
(``ecd.uncertainty``); with a judge configured, also a win rate against text-davinci-003 on
Self-Instruct's 252 user-oriented instructions."""

from ecd import layout
from ecd.backends import make_backend
from ecd.evaluation import (answer, benchmark_prompts, category_rows, held_out_prompts, prompt_set_id, score,
                            scored_records, seen_split, user_oriented)
from ecd.judge import win_rate
from ecd.pairs import load_pairs
from ecd.params import load_params
from ecd.records import write_json, write_jsonl
from ecd.stage import stage
from ecd.uncertainty import Verdicts, evidence


def _round(summary: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()}


@stage
def main() -> None:
    params = load_params()
    sets = {name: held_out_prompts(load_pairs(layout.PAIRS, "test").to_list())[: params.evaluate.heldout_limit]
            if name == "heldout" else benchmark_prompts(name) for name in params.evaluate.sets}
    # the constraint types the students were trained on: each benchmark's scores split by seen and unseen types
    trained = {t for ids in load_pairs(layout.PAIRS, "train")["instruction_id_list"] for t in ids}
    judge = make_backend(params.judge) if params.judge else None
    user = user_oriented() if judge else []
    metrics: dict[str, dict[str, dict]] = {}
    verdicts: dict[str, dict[str, Verdicts]] = {s: {} for s in sets}
    for name in layout.STUDENTS:
        metrics[name] = {}
        for set_name, prompts in sets.items():
            responses = answer(layout.MODELS / name, prompts, params.evaluate, f"{name} {set_name}")
            summary, results = score([{**p, "response": r} for p, r in zip(prompts, responses)])
            metrics[name][set_name] = {**summary, "prompt_set": prompt_set_id(prompts)}
            records = scored_records(prompts, results)
            if set_name != "heldout":
                metrics[name][set_name].update(seen_split(records, trained))
            verdicts[set_name][name] = Verdicts.from_results(records)
            write_jsonl(layout.EVAL / name / f"{set_name}.jsonl", records, sort_keys=False)
            print(f"evaluate {name} {set_name}: prompt-level strict {summary['prompt_strict']:.3f}, "
                  f"instruction-level strict {summary['inst_strict']:.3f}")
        if judge:
            answers = answer(layout.MODELS / name, user, params.evaluate, f"{name} user-oriented")
            items = [{"instruction": u["prompt"], "answer": a, "reference": u["reference"]} for u, a in zip(user, answers)]
            summary, records = win_rate(judge, items, name)
            metrics[name]["winrate"] = _round(summary)
            write_jsonl(layout.EVAL / name / "winrate.jsonl", records, sort_keys=False)
            print(f"evaluate {name} win rate vs text-davinci-003: {summary['win_rate']:.3f} "
                  f"({summary['judged']} judged, {summary['unparsable']} unparsable)")
    compare: dict[str, dict] = {}
    for set_name, by_student in verdicts.items():
        if not sets[set_name]:
            continue
        scores, deltas = evidence(by_student, params.evaluate.bootstrap_resamples, params.evaluate.bootstrap_seed)
        for name, values in scores.items():
            metrics[name][set_name].update(values)
        compare[set_name] = {pair: {m: _round(v) for m, v in d.items()} for pair, d in deltas.items()}
        d = deltas["dpo-control"]["prompt_strict"]
        print(f"evaluate {set_name}: dpo − control prompt-level strict {d['delta']:+.3f} "
              f"[{d['lo']:+.3f}, {d['hi']:+.3f}], McNemar p={d['p']:.3f}, detectable ≥{d['mde']:.3f}")
        if metrics["dpo"][set_name].get("unscored_prompts"):
            print(f"evaluate {set_name}: {metrics['dpo'][set_name]['unscored_prompts']} prompts not scored "
                  f"({metrics['dpo'][set_name]['unscored_types']}: a language resource is missing; "
                  "`python -m ecd.resources` installs it)")
    metrics = {name: {s: _round(v) for s, v in sets_.items()} for name, sets_ in metrics.items()}
    write_json(layout.METRICS / "evaluate.json", metrics)
    write_json(layout.METRICS / "compare.json", compare)
    write_json(layout.PLOTS / "scores.json", [
        {"set": s, "student": name, "prompt_strict": v["prompt_strict"], "lo": v["prompt_strict_lo"],
         "hi": v["prompt_strict_hi"]}
        for s in sets if sets[s] for name in layout.STUDENTS for v in [metrics[name][s]]])
    write_json(layout.PLOTS / "categories.json", category_rows({m: {k: v for k, v in s.items() if k != "winrate"}
                                                                for m, s in metrics.items()}))


if __name__ == "__main__":
    main()
