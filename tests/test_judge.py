"""The judge: strict parsing, raw replies kept, win rates asked in both orders, and judge-checked
constraints verified inside the pipeline through real backends (a tiny transformers model, and
scripted OpenAI-compatible servers on loopback standing in for capable models)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import LoopbackChat, make_project
from ecd import constraints as C
from ecd.backends import OpenAIBackend, TransformersBackend
from ecd.judge import judge_constraints, parse_choice, parse_yes_no, win_rate
from ecd.params import ModelParams
from ecd.records import read_jsonl


@pytest.mark.parametrize("text, want", [
    ("yes", True), ("No.", False), (" **YES** ", True), ('"no"', False),
    ("yes, it is", None), ("Yes and no", None), ("", None), ("I think yes", None), ("nope", None),
])
def test_yes_no_is_parsed_strictly(text: str, want: bool | None) -> None:
    assert parse_yes_no(text) is want


@pytest.mark.parametrize("text, want", [("A", "A"), ("b.", "B"), ("**A**", "A"), ("A or B", None), ("Answer: A", None)])
def test_choice_is_parsed_strictly(text: str, want: str | None) -> None:
    assert parse_choice(text) == want


def test_tiny_model_judge_keeps_raw_replies_and_never_passes_gibberish(tiny_model: Path) -> None:
    judge = TransformersBackend(ModelParams(backend="transformers", model=str(tiny_model), temperature=0.0,
                                            max_new_tokens=6))
    tone = C.Constraint("judge:tone", {"tone": "formal"})
    items = [("Dear Sir, I write to inform you.", tone), ("hey what's up lol", tone), ("hey what's up lol", tone)]
    results, stats = judge_constraints(judge, items)
    assert len(results) == 2 and stats.calls == 2  # the repeated question is asked once
    for r in results.values():
        assert r["method"] == "judge" and isinstance(r["judge_reply"], str)
        assert r["passed"] is (parse_yes_no(r["judge_reply"]) is True)
        assert r["judge_parse"] == ("ok" if parse_yes_no(r["judge_reply"]) is not None else "unparsable")


_Server = LoopbackChat.Handler
_serve = LoopbackChat.serve


class _AlwaysA(_Server):
    def answer(self, prompt: str) -> str:
        return "A"


class _PrefersGood(_Server):
    """Prefers the response that contains GOOD; says something unparsable when neither does."""

    def answer(self, prompt: str) -> str:
        a = prompt.split("Response A:")[1].split("Response B:")[0]
        b = prompt.split("Response B:")[1]
        if "GOOD" in a and "GOOD" not in b:
            return "A"
        if "GOOD" in b and "GOOD" not in a:
            return "B."
        return "Both are fine."


def _judge(url: str, name: str = "judge") -> OpenAIBackend:
    return OpenAIBackend(ModelParams(backend="openai", model=name, base_url=url, temperature=0.0, max_retries=0))


def test_win_rate_asks_both_orders() -> None:
    items = [{"instruction": "Say hi", "answer": "GOOD hi", "reference": "hello"},
             {"instruction": "Say hi", "answer": "hi", "reference": "GOOD hello"},
             {"instruction": "Say yo", "answer": "yo", "reference": "yo!"}]
    server, url = _serve(_PrefersGood)
    try:
        summary, records = win_rate(_judge(url), items, "t")
    finally:
        server.shutdown()
    assert [r["outcome"] for r in records] == ["win", "loss", "unparsable"]
    assert summary == {"win_rate": 0.5, "wins": 1, "ties": 0, "losses": 1, "unparsable": 1, "judged": 2}
    assert records[0]["judge_replies"] == ["A", "B."]
    server, url = _serve(_AlwaysA)  # a judge with nothing but position bias: every item a tie
    try:
        summary, _ = win_rate(_judge(url, "biased-judge"), items, "t")
    finally:
        server.shutdown()
    assert summary["ties"] == 3 and summary["win_rate"] == 0.5


class _Teacher(_Server):
    """A teacher that follows the evolution prompt's JSON contract and answers plainly."""

    def answer(self, prompt: str) -> str:
        if prompt.startswith("You make instructions harder"):
            inst = prompt.split("Instruction:\n")[1].split("\n\nReply with JSON only")[0]
            req = prompt.split("The requirement to add, exactly:\n")[1].split("\n\n")[0].replace("- ", "")
            cons = json.loads(re.search(r'"constraints": (\[.*\])\}$', prompt, re.S).group(1))
            return "```json\n" + json.dumps({"instruction": f"{inst} {req}", "constraints": cons}) + "\n```"
        low = prompt.lower()
        return "An answer." + (" TONE_OK" if "tone" in low else "") + (" EXAMPLE_OK" if "example" in low else "")


class _Judge(_Server):
    """Says yes to a tone or example question when the response carries the teacher's marker."""

    def answer(self, prompt: str) -> str:
        question = prompt.split("Requirement question:")[1].split("Response:")[0]
        response = prompt.split("Response:")[1]
        for word, marker in (("tone", "TONE_OK"), ("example", "EXAMPLE_OK")):
            if word in question:
                return "Yes." if marker in response else "no"
        return "no"


@pytest.mark.slow
@pytest.mark.parametrize("judge_kind", ["transformers", "openai"])
def test_judge_checked_constraints_in_the_pipeline(judge_kind: str, tiny_model: Path, tmp_path: Path) -> None:
    teacher, t_url = _serve(_Teacher)
    judge_server, j_url = _serve(_Judge)
    judge = ({"backend": "transformers", "model": str(tiny_model), "max_new_tokens": 4, "temperature": 0.0}
             if judge_kind == "transformers" else {"backend": "openai", "model": "judge", "base_url": j_url, "temperature": 0.0})
    try:
        proj = make_project(tmp_path / "proj", {
            "seeds": {"limit": 6},
            "teacher": {"backend": "openai", "model": "teacher", "base_url": t_url, "max_new_tokens": 32},
            "judge": judge,
            "evolve": {"chains_per_seed": 3, "types": ["judge:tone", "judge:concrete_example", "judge:perspectives"]},
            "pair": {"min_rejected_pass_fraction": 0.0},
            "rounds": {"r1": {"prev": "r0"}, "r2": {"prev": "r1"}},
        })
        proj.commit("judge")
        proj.run("dvc", "repro", "pair")
    finally:
        teacher.shutdown()
        judge_server.shutdown()
    evolve = json.loads((proj.path / "metrics/rounds/r1/evolve.json").read_text())
    assert evolve["evolved"] == 18  # the teacher keeps the JSON contract
    verify = json.loads((proj.path / "metrics/rounds/r1/verify.json").read_text())
    verdicts = read_jsonl(proj.path / "data/rounds/r1/verdicts.jsonl")
    judged = [r for v in verdicts for r in v["results"]]
    assert judged and all(r["method"] == "judge" and "judge_reply" in r for r in judged)
    assert verify["judged"] == len(judged)
    if judge_kind == "transformers":  # gibberish is unparsable, counted, and never a pass
        assert verify["judge_unparsable"] == sum(r["judge_parse"] == "unparsable" for r in judged) > 0
        assert all(not r["passed"] for r in judged if r["judge_parse"] == "unparsable")
    else:  # the teacher meets tone and example requirements, never the perspectives one
        assert verify["judge_unparsable"] == 0
        for r in judged:
            assert r["passed"] is (r["id"] in ("judge:tone", "judge:concrete_example")), r
        pairs = json.loads((proj.path / "metrics/pair.json").read_text())
        assert pairs["pairs"] > 0


class _PrefersLonger(_Server):
    """A judge without position bias: the longer response wins."""

    def answer(self, prompt: str) -> str:
        a = prompt.split("Response A:\n<<<\n")[1].split("\n>>>")[0]
        b = prompt.split("Response B:\n<<<\n")[1].split("\n>>>")[0]
        return "A" if len(a) > len(b) else "B"


@pytest.mark.slow
def test_evaluate_with_a_judge_reports_win_rates(tmp_path: Path) -> None:
    from test_pipeline import SMALL

    server, url = _serve(_PrefersLonger)
    try:
        proj = make_project(tmp_path / "proj", {
            **SMALL, "judge": {"backend": "openai", "model": "judge", "base_url": url, "concurrency": 16},
            "evaluate": {"max_new_tokens": 16, "sets": ["heldout"]},
        })
        proj.commit("judge")
        proj.run("dvc", "repro")
    finally:
        server.shutdown()
    metrics = json.loads((proj.path / "metrics/evaluate.json").read_text())
    for name in ("base", "sft", "control", "preference"):
        w = metrics[name]["winrate"]
        records = read_jsonl(proj.path / f"data/eval/{name}/winrate.jsonl")
        assert len(records) == 252 == w["judged"] + w["unparsable"] and w["unparsable"] == 0
        for r in records:  # the judge's rule, replayed
            longer = len(r["answer"]) > len(r["reference"])
            assert r["outcome"] == ("win" if longer else "loss") or len(r["answer"]) == len(r["reference"])
        assert w["win_rate"] == pytest.approx((w["wins"] + w["ties"] / 2) / w["judged"], abs=1e-4)
    report = proj.run("ecd", "report").stdout
    assert "judge win rate vs text-davinci-003" in report and "win_rate" in report
