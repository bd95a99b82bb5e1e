"""The vllm backend's adapter, tested against a FAKE of vLLM's API.

vLLM cannot run on these machines (its wheel is CUDA-only), so ``FakeVLLM`` below stands in for
the ``vllm`` module: it records how the adapter builds the engine and the sampling parameters, and
answers deterministically from each request's seed. It checks our side of the contract only.
"""

from __future__ import annotations

import sys
import types

import pytest

from ecd.backends import Request, VLLMBackend, answer_all, generate_cached, make_backend
from ecd.cache import CallCache
from ecd.errors import EcdError
from ecd.params import ModelParams


class FakeVLLM(types.ModuleType):
    """A fake ``vllm`` module: ``LLM``, ``SamplingParams`` and ``LLM.chat`` with vLLM's shapes."""

    def __init__(self) -> None:
        super().__init__("vllm")
        self.engines: list[dict] = []
        fake = self

        class SamplingParams:
            def __init__(self, **kw) -> None:
                self.__dict__.update(kw)

        class LLM:
            def __init__(self, **kw) -> None:
                fake.engines.append(kw)

            def chat(self, messages, sampling, use_tqdm=True):
                out = []
                for msgs, sp in zip(messages, sampling):
                    text = f"{msgs[-1]['content'][:10]}|seed={sp.seed}|t={sp.temperature}"
                    gen = types.SimpleNamespace(text=text, finish_reason="stop", token_ids=list(range(sp.max_tokens)))
                    out.append(types.SimpleNamespace(outputs=[gen], prompt_token_ids=[1, 2, 3]))
                return out

        self.LLM, self.SamplingParams = LLM, SamplingParams


def params(**kw) -> ModelParams:
    return ModelParams(**{"backend": "vllm", "model": "org/model", "tensor_parallel_size": 2, "data_parallel_size": 4,
                          "max_new_tokens": 5, **kw})


def test_adapter_builds_engine_and_seeds_each_request(monkeypatch, tmp_path) -> None:
    fake = FakeVLLM()
    monkeypatch.setitem(sys.modules, "vllm", fake)
    backend = make_backend(params())
    assert isinstance(backend, VLLMBackend)
    reqs = [Request(messages=[{"role": "user", "content": f"question {i}"}], seed=10 + i) for i in range(5)]
    out, stats = generate_cached(backend, reqs, template_version="t", description="vllm",
                                 cache=CallCache(tmp_path / "c.sqlite"))
    assert [c.text for c in out] == [f"question {i}|seed={10 + i}|t=0.7" for i in range(5)]
    assert all(c.completion_tokens == 5 and c.prompt_tokens == 3 for c in out)
    engine = fake.engines[0]
    assert len(fake.engines) == 1  # one engine for all batches
    assert engine["tensor_parallel_size"] == 2 and engine["data_parallel_size"] == 4
    assert engine["trust_remote_code"] is False
    assert backend.identity() == "vllm:org/model@main"
    # the cache key ignores parallelism: another layout is all hits
    again, s2 = generate_cached(make_backend(params(tensor_parallel_size=1, data_parallel_size=8)), reqs, template_version="t",
                                description="vllm", cache=CallCache(tmp_path / "c.sqlite"))
    assert s2.hits == 5 and [c.text for c in again] == [c.text for c in out]


def test_missing_vllm_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(EcdError, match=r"needs vLLM: `pip install ecd\[vllm\]`"):
        answer_all(make_backend(params()), [Request(messages=[{"role": "user", "content": "x"}])])
