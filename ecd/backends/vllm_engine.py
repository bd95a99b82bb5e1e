"""The ``vllm`` backend: vLLM's offline engine on GPU runners (an optional extra, imported only when used)."""

from __future__ import annotations

from typing import Any

from ecd.backends.base import SAMPLING_SETTINGS, Backend, Completion, OnDone, Request
from ecd.errors import EcdError
from ecd.params import ModelParams


class VLLMBackend(Backend):
    """vLLM's offline engine (``vllm.LLM``) for GPU runners, with tensor and data parallelism.

    An optional extra (``pip install ecd[vllm]``), imported only when this backend is used. Each
    request carries its own seed in ``SamplingParams``, so results do not depend on batching.
    """

    name = "vllm"
    settings = SAMPLING_SETTINGS | {"tensor_parallel_size", "data_parallel_size", "dtype", "trust_remote_code",
                                    "structured_output"}
    supports_schema = True

    def __init__(self, params: ModelParams) -> None:
        super().__init__(params)
        self._llm: Any = None

    def _vllm(self) -> Any:
        try:
            import vllm
        except ImportError:
            raise EcdError(
                "the vllm backend needs vLLM: `pip install ecd[vllm]` on a CUDA machine (see docs/backends.md)"
            ) from None
        return vllm

    def generate(self, requests: list[Request], on_done: OnDone) -> None:
        vllm = self._vllm()
        p = self.params
        if self._llm is None:
            self._llm = vllm.LLM(
                model=p.model, revision=p.revision, tensor_parallel_size=p.tensor_parallel_size,
                data_parallel_size=p.data_parallel_size, dtype=p.dtype, seed=p.seed,
                trust_remote_code=p.trust_remote_code,
            )
        sampling = []
        for r in requests:
            extra: dict[str, Any] = {}
            if r.json_schema is not None and self.holds_to_schema:  # vLLM >= 0.12's structured outputs
                from vllm.sampling_params import StructuredOutputsParams

                extra["structured_outputs"] = StructuredOutputsParams(json=r.json_schema)
            sampling.append(vllm.SamplingParams(temperature=p.temperature, top_p=p.top_p, max_tokens=p.max_new_tokens,
                                                seed=r.seed, **extra))
        outputs = self._llm.chat([r.messages for r in requests], sampling, use_tqdm=False)
        for i, out in enumerate(outputs):
            gen = out.outputs[0]
            on_done(i, Completion(text=gen.text, finish_reason=gen.finish_reason or "stop",
                                  prompt_tokens=len(out.prompt_token_ids or []),
                                  completion_tokens=len(gen.token_ids or [])))
