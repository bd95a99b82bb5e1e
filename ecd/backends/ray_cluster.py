"""Generation on a Ray cluster: Ray Data's batch-inference pattern, one model replica per worker.

When one machine is not enough, ``backend: ray`` hands a stage's cache misses to Ray Data: the
requests become a dataset, ``map_batches`` runs them through a pool of actors (a callable class that
loads the model once per worker: ``engine: vllm`` on GPU workers, ``engine: transformers`` where there
is none), and answers stream back to the driver, which caches each one as it arrives. ``dvc repro``
runs on the head node; the call cache stays in front of the cluster, so only misses travel.

Answers do not depend on how the work was split: each request carries its own seed, and the
transformers engine samples every request from its own generator, so a request gives the same text
on any worker, in any batch. With ``engine: transformers`` the backend is the same function of the
model and the request as the single-process ``transformers`` backend, and shares its cache entries.

Ray is an optional extra (``pip install 'ecd[ray]'``), imported only when this backend is used.
"""

from __future__ import annotations

import os
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any

from ecd.backends.base import Backend, Completion, OnDone, Request, answer_all, local_or_hub_identity
from ecd.backends.transformers_lm import TransformersBackend
from ecd.backends.vllm_engine import VLLMBackend
from ecd.errors import EcdError
from ecd.params import ModelParams
from ecd.progress import console


#: what a worker can run
ENGINES: dict[str, type[Backend]] = {"transformers": TransformersBackend, "vllm": VLLMBackend}


def _ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401  (Ray Data ships in ray[data])
    except ImportError:
        raise EcdError("the ray backend needs Ray Data: `pip install 'ecd[ray]'` on every node "
                       "(see docs/backends.md, 'A cluster through Ray')") from None
    return ray


def _check_reachable(address: str, tries: int = 3) -> None:
    """Connect to the cluster's ``host:port`` (or ``ray://host:port``), retrying with backoff; an
    address nobody answers is an error that names it."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise EcdError(f"ray_address {address!r}: expected host:port, ray://host:port or auto")
    last: OSError | None = None
    for attempt in range(tries):
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
            return
        except OSError as exc:
            last = exc
            if attempt + 1 < tries:
                time.sleep(2 ** attempt)
    raise EcdError(f"cannot reach the Ray cluster at {address!r}: {last} (tried {tries} times; "
                   "is `ray start --head` running there, and is its port open?)")


class _Worker:
    """One model replica: a Ray Data actor that loads the engine's backend once and answers batches."""

    def __init__(self, params: dict[str, Any], threads: int) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        model = ModelParams(**params)
        self.backend = ENGINES[model.backend](model)
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        import json

        requests = [Request(messages=json.loads(m), seed=int(s), json_schema=json.loads(j) if j else None)
                    for m, s, j in zip(batch["messages"], batch["seed"], batch["json_schema"])]
        done = answer_all(self.backend, requests)
        return {"index": list(batch["index"]), "text": [c.text for c in done],
                "finish_reason": [c.finish_reason for c in done], "prompt_tokens": [c.prompt_tokens for c in done],
                "completion_tokens": [c.completion_tokens for c in done], "error": [c.error for c in done],
                "worker": [self.name] * len(done)}


class RayBackend(Backend):
    """A stage's requests through a pool of model replicas on a Ray cluster (see the module docstring)."""

    name = "ray"
    #: Ray Data's batch (requests a worker answers at once) is ``batch_size``, the engine's own width
    settings = frozenset({"engine", "ray_address", "num_workers", "cpus_per_worker", "gpus_per_worker", "batch_size"})

    def __init__(self, params: ModelParams) -> None:
        super().__init__(params)
        self.supports_schema = params.engine == "vllm"
        #: answers per worker (host:pid) in the last run: how Ray split the work
        self.answers_by_worker: Counter[str] = Counter()

    def identity(self) -> str:
        # the engine's identity: the same model through the same engine gives the same answers
        if self._identity is None:
            self._identity = local_or_hub_identity(self.params.engine, self.params)
        return self._identity

    def where(self) -> str:
        return f"{self.identity()} on Ray ({self.params.ray_address or 'a local cluster'})"

    @classmethod
    def reads(cls, params: ModelParams) -> frozenset[str]:
        return super().reads(params) | ENGINES[params.engine].reads(params)

    def _engine_params(self) -> dict[str, Any]:
        """The worker's params: this model through the engine's own backend (the settings it reads),
        with a local model directory made absolute (workers do not share the driver's working directory)."""
        engine = ENGINES[self.params.engine]
        p = self.params.model_dump(include=set(engine.reads(self.params)), exclude_unset=True)
        p["backend"] = self.params.engine
        p["model"] = self.params.model
        local = Path(str(self.params.model)).expanduser()
        if local.exists():
            p["model"] = str(local.resolve())
        return p

    def _init(self) -> Any:
        ray = _ray()
        p = self.params
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "configure_logging": False}
            if p.ray_address is None:  # a local cluster on this machine, sized for the pool
                os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing leaves an offline run
                kwargs.update(num_cpus=max(p.num_workers * p.cpus_per_worker, os.cpu_count() or 1),
                              object_store_memory=256 * 1024 * 1024,
                              # Ray runs workers at nice 15; here they do all of the stage's work, and at
                              # that priority anything else on the machine starves them (measured: 20x slower)
                              _system_config={"worker_niceness": 0})
            if p.ray_address not in (None, "auto"):
                _check_reachable(p.ray_address)  # ray.init would wait minutes on an address nobody answers
            try:
                ray.init(address=p.ray_address, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise EcdError(f"cannot reach the Ray cluster at {p.ray_address!r}: {exc}") from None
        ray.data.DataContext.get_current().enable_progress_bars = False
        return ray

    def generate(self, requests: list[Request], on_done: OnDone) -> None:
        import json

        if not requests:
            return
        ray = self._init()
        p = self.params
        rows = [{"index": i, "messages": json.dumps(r.messages), "seed": r.seed,
                 "json_schema": json.dumps(r.json_schema) if r.json_schema is not None and self.holds_to_schema else ""}
                for i, r in enumerate(requests)]
        # blocks of one batch each, so that every worker gets work from the start
        ds = ray.data.from_items(rows, override_num_blocks=max(1, -(-len(rows) // p.batch_size)))
        answered = ds.map_batches(
            _Worker, fn_constructor_kwargs={"params": self._engine_params(), "threads": int(p.cpus_per_worker)},
            batch_size=p.batch_size, compute=ray.data.ActorPoolStrategy(size=p.num_workers),
            num_cpus=p.cpus_per_worker, num_gpus=p.gpus_per_worker or None, batch_format="numpy",
        )
        self.answers_by_worker = Counter()
        for batch in answered.iter_batches(batch_size=None, batch_format="numpy"):
            self.answers_by_worker.update(str(w) for w in batch["worker"])
            for k, i in enumerate(batch["index"]):
                c = Completion(text=str(batch["text"][k]), finish_reason=str(batch["finish_reason"][k]),
                               prompt_tokens=int(batch["prompt_tokens"][k]),
                               completion_tokens=int(batch["completion_tokens"][k]), error=str(batch["error"][k]))
                on_done(int(i), c)
        split = ", ".join(str(n) for n in sorted(self.answers_by_worker.values(), reverse=True))
        console.print(f"ray: {len(requests)} requests answered by {len(self.answers_by_worker)} workers ({split})")
