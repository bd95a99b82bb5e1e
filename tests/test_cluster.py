"""Generation through a real local Ray cluster (two CPU workers, Ray Data's actor pool) serving the
tiny model: byte-identical answers to the single-process transformers backend, the call cache in
front (only misses reach the cluster), and a clear error for an unreachable cluster."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ecd.backends import Request, TransformersBackend, answer_all, generate_cached, make_backend
from ecd.cache import CallCache
from ecd.errors import EcdError
from ecd.params import ModelParams

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'ecd[ray]')")
pytestmark = pytest.mark.slow

PROMPTS = [f"Write a short note about item number {i}." for i in range(22)] + ["Hi", "Describe a red map in detail."]


def _requests() -> list[Request]:
    return [Request(messages=[{"role": "user", "content": p}], seed=500 + i) for i, p in enumerate(PROMPTS)]


def _params(model: Path, **kw) -> ModelParams:
    return ModelParams(**{"model": str(model), "max_new_tokens": 16, "temperature": 0.8, "batch_size": 4, **kw})


@pytest.fixture(scope="module")
def local_cluster():
    """A local Ray cluster with two CPUs, shut down after the module."""
    yield
    if ray.is_initialized():
        ray.shutdown()


def test_two_workers_answer_as_one_process_does(tiny_model: Path, tmp_path: Path, local_cluster) -> None:
    single = TransformersBackend(_params(tiny_model, backend="transformers"))
    cluster = make_backend(_params(tiny_model, backend="ray", num_workers=2, cpus_per_worker=1))
    assert cluster.identity() == single.identity()  # same model, same engine: same cache entries

    t0 = time.perf_counter()
    alone, _ = generate_cached(single, _requests(), template_version="t", description="single",
                               cache=CallCache(tmp_path / "single.sqlite"))
    t1 = time.perf_counter()
    spread, stats = generate_cached(cluster, _requests(), template_version="t", description="ray",
                                    cache=CallCache(tmp_path / "ray.sqlite"))
    t2 = time.perf_counter()
    print(f"{len(PROMPTS)} requests: one process {t1 - t0:.1f} s, Ray with 2 workers {t2 - t1:.1f} s "
          f"(including the cluster's start and two model loads)")
    assert stats.misses == len(PROMPTS)
    assert [(c.text, c.finish_reason, c.completion_tokens) for c in spread] == \
           [(c.text, c.finish_reason, c.completion_tokens) for c in alone]
    assert len({c.text for c in spread}) > 1  # sampled, not one answer repeated
    # the work really was split: Ray Data ran the batches of 4 on two actors, one process each
    assert len(cluster.answers_by_worker) == 2 and sum(cluster.answers_by_worker.values()) == len(PROMPTS)
    assert all(n % 4 == 0 for n in cluster.answers_by_worker.values())


def test_only_cache_misses_go_to_the_cluster(tiny_model: Path, tmp_path: Path, local_cluster) -> None:
    cache = CallCache(tmp_path / "shared.sqlite")
    single = TransformersBackend(_params(tiny_model, backend="transformers"))
    half = _requests()[: len(PROMPTS) // 2]
    first, _ = generate_cached(single, half, template_version="t", description="half", cache=cache)
    cluster = make_backend(_params(tiny_model, backend="ray"))
    seen: list[int] = []
    original = cluster.generate

    def counting(requests: list[Request], on_done=None):
        seen.append(len(requests))
        return original(requests, on_done)

    cluster.generate = counting  # type: ignore[method-assign]
    every, stats = generate_cached(cluster, _requests(), template_version="t", description="rest", cache=cache)
    assert (stats.hits, stats.misses) == (len(half), len(PROMPTS) - len(half))
    assert seen == [len(PROMPTS) - len(half)]
    assert [c.text for c in every[: len(half)]] == [c.text for c in first]
    again, stats = generate_cached(cluster, _requests(), template_version="t", description="again", cache=cache)
    assert stats.hits == len(PROMPTS) and seen == [len(PROMPTS) - len(half)]  # the cluster was not asked again


def test_an_unreachable_cluster_is_named(tiny_model: Path) -> None:
    if ray.is_initialized():
        ray.shutdown()
    backend = make_backend(_params(tiny_model, backend="ray", ray_address="127.0.0.1:1"))
    with pytest.raises(EcdError, match="cannot reach the Ray cluster at '127.0.0.1:1'"):
        answer_all(backend, _requests()[:1])
