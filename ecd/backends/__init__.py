"""Model access: every call ecd makes to a model, behind one interface, cached and resumable.

The package's modules, from the interface down:

- ``base``: ``Request``, ``Completion``, the ``Backend`` interface (one channel for answers; the
  settings each backend reads), ``answer_all``;
- ``cached``: ``generate_cached``, the call cache in front of every backend, and the failure policy;
- one module per backend: ``programmatic`` (the model-free teacher), ``transformers_lm`` (with its
  decode loops ``packed_decode``, ``padded_decode`` and their shared ``decode``), ``openai_server``
  (with ``ratelimit``, ``batch_api`` and ``http_policy``), ``vllm_engine``, ``ray_cluster``.

Stages ask for a backend by its params (``make_backend``) and run requests through
``generate_cached``; nothing in this package imports from the pipeline above it.
"""

from __future__ import annotations

from ecd.backends.base import (FAILED, REJECTED, Backend, Completion, OnDone, Request, answer_all,
                               check_settings)
from ecd.backends.cached import CallsFailed, RunStats, apply_failure_policy, generate_cached
from ecd.backends.openai_server import OpenAIBackend
from ecd.backends.programmatic import ProgrammaticTeacher
from ecd.backends.ray_cluster import RayBackend
from ecd.backends.transformers_lm import TransformersBackend
from ecd.backends.vllm_engine import VLLMBackend
from ecd.errors import EcdError
from ecd.params import ModelParams

#: the ``backend`` setting's values and what each one makes
BACKENDS: dict[str, type[Backend]] = {"programmatic": ProgrammaticTeacher, "transformers": TransformersBackend,
                                      "openai": OpenAIBackend, "vllm": VLLMBackend, "ray": RayBackend}


def make_backend(params: ModelParams) -> Backend:
    """The backend ``params`` name, refusing settings it would ignore."""
    if params.backend not in BACKENDS:
        raise EcdError(f"unknown backend {params.backend!r}; backends: {', '.join(BACKENDS)}")
    return BACKENDS[params.backend](params)


__all__ = ["BACKENDS", "FAILED", "REJECTED", "Backend", "CallsFailed", "Completion", "OnDone", "OpenAIBackend",
           "ProgrammaticTeacher", "RayBackend", "Request", "RunStats", "TransformersBackend", "VLLMBackend",
           "answer_all", "apply_failure_policy", "check_settings", "generate_cached", "make_backend"]
