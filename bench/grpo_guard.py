"""What the reward guard changes: GRPO from the SFT student with ``task_guard`` at its weight and at 0,
the same instructions and seeds otherwise; both students answer the held-out instructions greedily.

Prints, for each: prompt-level strict on the held-out instructions, the mean ``task_guard`` score of
the answers against the held-out pairs' verified answers, the mean answer length in words, and a few
answers side by side. Run after ``dvc repro`` (it reads ``data/pairs`` and starts from ``models/sft``):

    python bench/grpo_guard.py [--prompts 256] [--show 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ecd import layout  # noqa: E402
from ecd.backends import Request, TransformersBackend, generate_cached  # noqa: E402
from ecd.constraints import count_words, follow_list  # noqa: E402
from ecd.grpo import grpo_rows, train_grpo  # noqa: E402
from ecd.pairs import load_pairs  # noqa: E402
from ecd.params import ModelParams, load_params  # noqa: E402
from ecd.rewards import task_guard  # noqa: E402
from ecd.training import fits, prepare_training  # noqa: E402


def answers(model: Path, rows: list[dict], max_new_tokens: int) -> list[str]:
    backend = TransformersBackend(ModelParams(backend="transformers", model=str(model), temperature=0.0,
                                              max_new_tokens=max_new_tokens, batch_size=64))
    done, _ = generate_cached(backend, [Request(r["prompt"]) for r in rows], template_version="grpo-guard",
                              description=f"answers of {model.name}")
    return [c.text for c in done]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=256, help="training instructions (the first of the preference run's order)")
    ap.add_argument("--show", type=int, default=3, help="answers shown side by side")
    args = ap.parse_args()
    params = load_params()
    tok = prepare_training(params.train, layout.MODELS / "sft")
    train_rows = grpo_rows([r for r in load_pairs(layout.PAIRS, "train").to_list()
                            if fits(tok, r, params.train.max_length)], args.prompts)
    test_rows = grpo_rows(load_pairs(layout.PAIRS, "test").to_list())
    weights = dict(params.train.grpo.reward_weights)
    settings = {"with the guard": weights, "without it": {**weights, "task_guard": 0.0}}
    print(f"GRPO on {len(train_rows)} instructions, evaluated on {len(test_rows)} held-out ones; weights {weights}")
    results = {}
    with tempfile.TemporaryDirectory() as work:
        for label, w in settings.items():
            train = params.train.model_copy(update={"grpo": params.train.grpo.model_copy(update={"reward_weights": w})})
            out = Path(work) / label.replace(" ", "-")
            train_grpo(layout.MODELS / "sft", train_rows, train, out, Path(work) / "trainer")
            results[label] = answers(out, test_rows, params.evaluate.max_new_tokens)
    prompts = [r["prompt"] for r in test_rows]
    columns = {k: [r[k] for r in test_rows] for k in ("instruction_id_list", "kwargs", "reference")}
    print(f"{'GRPO':16} {'prompt strict':>13} {'task_guard':>10} {'words':>6}")
    for label, texts in results.items():
        strict = statistics.mean(all(v is True for v in follow_list(t, r["instruction_id_list"], r["kwargs"]))
                                 for t, r in zip(texts, test_rows))
        guard = statistics.mean(task_guard(prompts, texts, **columns))
        print(f"{label:16} {strict:>13.3f} {guard:>10.3f} {statistics.mean(count_words(t) for t in texts):>6.1f}")
    for k in range(min(args.show, len(test_rows))):
        print(f"\n--- {test_rows[k]['prompt'][0]['content'][:300]}")
        for label, texts in results.items():
            print(f"[{label}] {texts[k][:300]!r}")


if __name__ == "__main__":
    main()
