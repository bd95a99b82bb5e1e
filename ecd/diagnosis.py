"""Why one way of building pairs taught more than another, in the data: what the pairs are made of
and what each student got right and wrong by constraint type.

An ECD pair is meant to be a hard negative: the rejected answer R(t−1) answers the same task and
misses only what I(t) added. Whether the pairs are that in practice — or whether one constraint type
dominates them, or the rejected side differs from the chosen in everything — is read here from the
pairs themselves, beside the students' per-type verdicts on a benchmark.
"""

from __future__ import annotations

import difflib
import io
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

#: how many of the most frequent added constraint types a strategy's anatomy lists
TOP_TYPES = 5


def pair_anatomy(pairs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per strategy: how many pairs; the share whose rejected answer misses only constraints the
    instruction's last evolution added (it differs from the chosen one "only by the added
    requirement", as far as the checks can tell); the rejected side's mean pass fraction; how alike
    the two answers are (difflib's ratio over words, 1 for the same text) and how long the rejected
    answer is beside the chosen one; and the added types that make up most of the pairs."""
    from ecd.rewards import message_text

    out: dict[str, dict[str, Any]] = {}
    by_strategy: dict[str, list[Mapping[str, Any]]] = {}
    for p in pairs:
        by_strategy.setdefault(str(p["strategy"]), []).append(p)
    for strategy, rows in sorted(by_strategy.items()):
        only_new = similar = ratio = 0.0
        types: Counter[str] = Counter()
        for p in rows:
            missed, new = set(p["missed_constraints"]), set(p["new_constraints"])
            only_new += bool(missed) and missed <= new
            chosen, rejected = message_text(p["chosen"], "assistant").split(), message_text(p["rejected"], "assistant").split()
            similar += difflib.SequenceMatcher(None, chosen, rejected, autojunk=False).ratio()
            ratio += len(rejected) / max(len(chosen), 1)
            types.update(p["new_constraints"] or ["(none added)"])
        n = len(rows)
        out[strategy] = {
            "pairs": n,
            "missed_only_added": only_new / n,
            "rejected_pass_fraction": sum(float(p["rejected_pass_fraction"]) for p in rows) / n,
            "similarity": similar / n,
            "length_ratio": ratio / n,
            "top_added_types": [(t, c / n) for t, c in types.most_common(TOP_TYPES)],
        }
    return out


def anatomy_markdown(anatomy: Mapping[str, Mapping[str, Any]]) -> str:
    lines = ["| strategy | pairs | rejected misses only what was added | rejected pass fraction | "
             "answers alike (word diff ratio) | rejected / chosen length | most frequent added types (share of pairs) |",
             "|---|---|---|---|---|---|---|"]
    for strategy, a in anatomy.items():
        top = ", ".join(f"{t} {share:.0%}" for t, share in a["top_added_types"])
        lines.append(f"| {strategy} | {a['pairs']} | {a['missed_only_added']:.0%} | {a['rejected_pass_fraction']:.2f} | "
                     f"{a['similarity']:.2f} | {a['length_ratio']:.2f} | {top} |")
    return "\n".join(lines)


def type_scores(records: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, dict[str, tuple[int, int]]]:
    """Instruction-level strict verdicts by constraint type for each arm: type → arm → (followed,
    instructions), from the arms' evaluation records on one set."""
    out: dict[str, dict[str, tuple[int, int]]] = {}
    for arm, rows in records.items():
        for r in rows:
            for t, ok in zip(r["instruction_id_list"], r["follow_instruction_list"]):
                if ok is None:
                    continue
                followed, total = out.setdefault(t, {}).get(arm, (0, 0))
                out[t][arm] = (followed + bool(ok), total + 1)
    return dict(sorted(out.items()))


def type_markdown(scores: Mapping[str, Mapping[str, tuple[int, int]]], arms: Sequence[str], trained: set[str]) -> str:
    """One row per constraint type: each arm's instruction-level strict accuracy, types the pairs
    trained on marked *."""
    lines = ["| type | instructions | " + " | ".join(arms) + " |", "|---|---" + "|---" * len(arms) + "|"]
    for t, by_arm in scores.items():
        n = max(total for _, total in by_arm.values())
        cells = [f"{by_arm[a][0] / by_arm[a][1]:.2f}" if a in by_arm and by_arm[a][1] else "" for a in arms]
        lines.append(f"| {t}{' *' if t in trained else ''} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def word_diff(a: str, b: str) -> list[tuple[str, str, str]]:
    """``a`` and ``b`` cut into aligned pieces: ``(op, piece of a, piece of b)`` with op ``equal``
    where they agree and ``replace``/``delete``/``insert`` where they differ, compared word by word
    with the whitespace kept, so that joining each side's pieces gives the text back."""
    import re

    wa, wb = re.findall(r"\S+\s*|\s+", a), re.findall(r"\S+\s*|\s+", b)
    matcher = difflib.SequenceMatcher(None, [w.strip() for w in wa], [w.strip() for w in wb], autojunk=False)
    return [(op, "".join(wa[i1:i2]), "".join(wb[j1:j2])) for op, i1, i2, j1, j2 in matcher.get_opcodes()]


def read_pairs_at(rev: str, split: str = "train") -> list[dict[str, Any]]:
    """``data/pairs/<split>.parquet`` as it was at ``rev`` (an experiment, from DVC's cache)."""
    import pyarrow.parquet as pq

    from ecd import layout
    from ecd.seed_runs import read_at

    table = pq.read_table(io.BytesIO(read_at(rev, f"{layout.PAIRS.as_posix()}/{split}.parquet")))
    return list(table.to_pylist())


def reward_view(records: Mapping[str, Sequence[Mapping[str, Any]]], pairs: Sequence[Mapping[str, Any]],
                ) -> dict[str, list[dict[str, Any]]]:
    """GRPO's rewards (``ecd.rewards``) on each arm's answers to the held-out instructions, the
    verified chosen answer of the instruction's test pair as the guard's reference: arm → per answer,
    its ``key`` and each reward's value, in the records' order."""
    from ecd.rewards import REWARD_FUNCTIONS, message_text

    by_id = {str(p["instruction_id"]): p for p in pairs}
    out: dict[str, list[dict[str, Any]]] = {}
    for arm, rows in records.items():
        known = [r for r in rows if str(r["key"]) in by_id]
        refs = [by_id[str(r["key"])] for r in known]
        columns = {"instruction_id_list": [list(p["instruction_id_list"]) for p in refs],
                   "kwargs": [[dict(k) for k in p["kwargs"]] for p in refs],
                   "reference": [message_text(p["chosen"], "assistant") for p in refs]}
        prompts, answers = [str(r["prompt"]) for r in known], [str(r["response"]) for r in known]
        scores = {name: fn(prompts, answers, **columns) for name, fn in REWARD_FUNCTIONS.items()}
        out[arm] = [{"key": str(r["key"]), **{name: values[i] for name, values in scores.items()}} for i, r in enumerate(known)]
    return out


def _cut(text: Any, width: int) -> str:
    flat = " ".join(str(text).split())
    return flat[:width] + ("…" if len(flat) > width else "")


def reward_markdown(view: Mapping[str, Sequence[Mapping[str, Any]]], records: Mapping[str, Sequence[Mapping[str, Any]]],
                    focus: str = "grpo", beside: str = "control", examples: int = 3, width: int = 280,
                    table: bool = True) -> str:
    """Each arm's mean of each reward (unless ``table`` is False), then the ``examples`` answers of
    ``focus`` that meet every constraint while keeping least of the task (the lowest guard), beside
    ``beside``'s answer to the same instruction: what the guard is there to catch, on real answers
    (``focus="grpo_noguard", beside="grpo"``: what the guard changed)."""
    from ecd.rewards import REWARD_FUNCTIONS

    names = list(REWARD_FUNCTIONS)
    lines = ["| arm | answers | " + " | ".join(f"mean {n}" for n in names) + " |", "|---|---" + "|---" * len(names) + "|"]
    for arm, rows in view.items():
        means = [sum(float(r[n]) for r in rows) / max(len(rows), 1) for n in names]
        lines.append(f"| {arm} | {len(rows)} | " + " | ".join(f"{m:.3f}" for m in means) + " |")
    if not table:
        lines = []
    if focus not in view or beside not in view:
        return "\n".join(lines)
    text = {arm: {str(r["key"]): r for r in rows} for arm, rows in records.items()}
    other = {str(r["key"]): r for r in view[beside]}
    met = sorted((r for r in view[focus] if r["all_constraints"] == 1.0), key=lambda r: (r["task_guard"], r["key"]))
    for r in met[:examples]:
        key, o = r["key"], other.get(r["key"])
        lines += ["", f"**{key}**: {_cut(text[focus][key]['prompt'], width)}", "",
                  f"- {focus} (every constraint met; guard {r['task_guard']:.2f}): {_cut(text[focus][key]['response'], width)}"]
        if o is not None:
            lines.append(f"- {beside} ({'every constraint met' if o['all_constraints'] == 1.0 else 'a constraint missed'}; "
                         f"guard {o['task_guard']:.2f}): {_cut(text[beside][key]['response'], width)}")
    return "\n".join(lines)
