"""evaluate: the base, SFT, SFT-only control and preference-trained students answer the sets of
``evaluate.sets`` (the held-out instructions, IFEval's 541 prompts, IFBench's 294), scored by the
constraint library, every score and every difference between students with its 95 % interval
(``ecd.uncertainty``); with a judge configured, also a win rate against text-davinci-003 on
Self-Instruct's 252 user-oriented instructions (``ecd.evaluation.evaluate_students``)."""

from ecd import layout
from ecd.evaluation import category_rows, evaluate_students, score_rows
from ecd.params import load_params
from ecd.records import write_json
from ecd.stage import stage


@stage
def main() -> None:
    params = load_params()
    metrics, compare = evaluate_students(params)
    write_json(layout.METRICS / "evaluate.json", metrics)
    write_json(layout.METRICS / "compare.json", compare)
    write_json(layout.PLOTS / "scores.json", score_rows(metrics, list(compare)))
    write_json(layout.PLOTS / "categories.json", category_rows({m: {k: v for k, v in s.items() if k != "winrate"}
                                                                for m, s in metrics.items()}))


if __name__ == "__main__":
    main()
