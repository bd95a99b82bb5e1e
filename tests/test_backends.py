"""The transformers backend on a tiny local model, the call cache under it, and an LLM teacher in
the pipeline whose gibberish is eliminated and counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import make_project
from ecd.backends import Request, TransformersBackend, generate_cached
from ecd.cache import CallCache
from ecd.errors import EcdError
from ecd.params import ModelParams
from ecd.records import read_jsonl

PROMPTS = [f"Write a note about item number {i}." for i in range(10)] + ["Hi", "Describe a red map in detail, please."]


def backend(model: Path, **kw) -> TransformersBackend:
    return TransformersBackend(ModelParams(backend="transformers", model=str(model), max_new_tokens=12, **kw))


def requests() -> list[Request]:
    return [Request(messages=[{"role": "user", "content": p}], seed=100 + i) for i, p in enumerate(PROMPTS)]


def test_same_seed_same_text_whatever_the_batch(tiny_model: Path, tmp_path: Path) -> None:
    one = generate_cached(backend(tiny_model, batch_size=1), requests(), template_version="t",
                          description="b1", cache=CallCache(tmp_path / "a.sqlite"))[0]
    many = generate_cached(backend(tiny_model, batch_size=5), requests(), template_version="t",
                           description="b5", cache=CallCache(tmp_path / "b.sqlite"))[0]
    assert [c.text for c in one] == [c.text for c in many]
    assert len({c.text for c in one}) > 1  # sampling really varies across seeds
    assert all(c.completion_tokens > 0 and c.finish_reason in {"stop", "length"} for c in one)


def test_cache_serves_reruns_and_ignores_batch_size(tiny_model: Path, tmp_path: Path) -> None:
    cache = CallCache(tmp_path / "c.sqlite")
    first, s1 = generate_cached(backend(tiny_model, batch_size=4), requests(), template_version="t",
                                description="cold", cache=cache)
    again, s2 = generate_cached(backend(tiny_model, batch_size=7), requests(), template_version="t",
                                description="warm", cache=cache)
    assert (s1.hits, s1.misses) == (0, len(PROMPTS))
    assert (s2.hits, s2.misses) == (len(PROMPTS), 0)
    assert [c.text for c in first] == [c.text for c in again]
    # a changed sampling parameter is a different call
    _, s3 = generate_cached(backend(tiny_model, batch_size=4, temperature=0.9), requests(),
                            template_version="t", description="new", cache=cache)
    assert s3.misses == len(PROMPTS)


def test_missing_model_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(EcdError, match=f"model path does not exist: {tmp_path}/nope"):
        backend(tmp_path / "nope")


@pytest.mark.slow
def test_an_llm_teacher_whose_answers_never_end_yields_no_roots(tiny_model: Path, tmp_path: Path) -> None:
    """The dataset half with a tiny transformers model as teacher, judge and weak model."""
    tiny = {"backend": "transformers", "model": str(tiny_model), "max_new_tokens": 24, "batch_size": 8}
    proj = make_project(tmp_path / "proj", {
        "seeds": {"limit": 6},
        "teacher": tiny,
        "judge": {**tiny, "max_new_tokens": 4, "temperature": 0.0},
        "evolve": {"chains_per_seed": 2},
        "sample": {"n": 2},
        "pair": {"strategy": ["ecd", "model_gap", "random"], "match": [], "weak": tiny},
        "rounds": {"r1": {"prev": "r0"}},
    })
    proj.commit("llm teacher")
    proj.run("dvc", "repro", "pair")
    evolve = json.loads((proj.path / "metrics/rounds/r1/evolve.json").read_text())
    verify = json.loads((proj.path / "metrics/rounds/r1/verify.json").read_text())
    roots = json.loads((proj.path / "metrics/rounds/r0/verify.json").read_text())
    # the untrained tiny model never ends an answer within 24 tokens: every seed answer is cut, and a
    # cut answer is never chosen, so no root survives to evolve (the gibberish evolution replies of a
    # weak model are counted in tests/test_evolve.py against a scripted server)
    assert roots["eliminated_by_cause"] == {"cut_at_max_tokens": 6} and roots["accepted"] == 0
    assert evolve["chains"] == 0 and verify["accepted"] == 0
    assert json.loads((proj.path / "metrics/pair.json").read_text())["pairs"] == 0


def test_a_setting_the_backend_ignores_is_an_error_that_names_it() -> None:
    from ecd.backends import make_backend

    with pytest.raises(EcdError, match=r"backend 'openai' does not read batch_size"):
        make_backend(ModelParams(backend="openai", model="m", base_url="http://127.0.0.1:1/v1", batch_size=64))
    with pytest.raises(EcdError, match=r"backend 'programmatic' does not read max_new_tokens, model"):
        make_backend(ModelParams(model="m", max_new_tokens=8))
    with pytest.raises(EcdError, match=r"backend 'ray' does not read concurrency"):
        make_backend(ModelParams(backend="ray", model="m", concurrency=4))
    # a default written out is no error: params.yaml lists the teacher's knobs for every backend
    make_backend(ModelParams(backend="openai", model="m", base_url="http://127.0.0.1:1/v1", batch_size=16))
    # ray reads its engine's settings too
    make_backend(ModelParams(backend="ray", model="m", engine="vllm", tensor_parallel_size=2))


def test_every_setting_is_read_by_some_backend_and_the_docs_say_which() -> None:
    import re

    from ecd.backends import BACKENDS
    from ecd.backends.base import COMMON_SETTINGS

    read = set().union(*(cls.settings for cls in BACKENDS.values())) | COMMON_SETTINGS
    assert set(ModelParams.model_fields) == read
    doc = (Path(__file__).resolve().parents[1] / "docs/backends.md").read_text()
    doc = doc.split("## The settings each backend reads")[1].split("\n## ")[0]
    for name, cls in BACKENDS.items():
        row = re.search(rf"^\| `{name}` \| (.*) \|$", doc, re.M)
        assert row, f"docs/backends.md has no settings row for {name}"
        named = set(re.findall(r"`(\w+)`", row.group(1)))
        assert named == set(cls.settings), f"{name}: docs name {sorted(named)}, the code reads {sorted(cls.settings)}"


def test_an_index_never_answered_is_an_error(tmp_path: Path) -> None:
    from ecd.backends import Backend, Completion, OnDone, generate_cached

    class Forgetful(Backend):
        """Answers every request but the last: a backend bug that must not pass as a shorter list."""

        name = "forgetful"

        def identity(self) -> str:
            return "forgetful:v1"

        def generate(self, requests: list[Request], on_done: OnDone) -> None:
            for i in range(len(requests) - 1):
                on_done(i, Completion(f"answer {i}"))

    requests = [Request(messages=[{"role": "user", "content": f"q{i}"}]) for i in range(3)]
    with pytest.raises(EcdError, match="returned no answer for 1 of 3 requests"):
        generate_cached(Forgetful(ModelParams()), requests, template_version="t", description="forgetful",
                        cache=CallCache(tmp_path / "calls.sqlite"))
    # the answered two were cached before the error: a rerun asks only for the third
    assert CallCache(tmp_path / "calls.sqlite").count() == 2
