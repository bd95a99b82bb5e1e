"""The ``transformers`` backend: any local or hub causal LM, with the model's chat template."""

from __future__ import annotations

import warnings
from typing import Any

from ecd.backends.base import SAMPLING_SETTINGS, Backend, Completion, OnDone, Request
from ecd.backends.decode import Generated, SeededSampler, as_list, greedy, pack_linears
from ecd.backends.kv_pool import cache_tokens
from ecd.backends.packed_decode import generate_packed, supports_packed
from ecd.backends.padded_decode import generate_continuous
from ecd.errors import EcdError
from ecd.layout import check_model_path
from ecd.params import ModelParams


_FALLBACK_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] | capitalize }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


class TransformersBackend(Backend):
    """A causal LM through ``transformers``, every request from its own seed.

    On a CPU, for the attention it computes exactly, the packed loop (``packed_decode``): at most
    ``batch_size`` rows in flight in ``kv_cache_gib`` of cache, ``step_tokens`` a step. Elsewhere the
    padded loop (``padded_decode``). Sampling draws each row's next token from that row's own
    generator, so a request gives the same text whatever rows it shares its steps with.
    """

    name = "transformers"
    settings = SAMPLING_SETTINGS | {"dtype", "device", "batch_size", "kv_cache_gib", "step_tokens", "trust_remote_code"}

    def __init__(self, params: ModelParams) -> None:
        super().__init__(params)
        self._model: Any = None
        self._tok: Any = None
        self._device = "cpu"
        check_model_path(params.model)

    def _load(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        p = self.params
        device = p.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if p.dtype == "auto":
            dtype = torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32
        else:
            dtype = getattr(torch, p.dtype)
        try:
            tok = AutoTokenizer.from_pretrained(
                p.model, revision=p.revision, padding_side="left", trust_remote_code=p.trust_remote_code
            )
            # weights read into memory rather than mapped when they will be packed: the mapped file's
            # pages would stay resident beside the packed copy (1.5 GB instead of 1.1 for SmolLM2-135M)
            packing = torch.device(device).type == "cpu" and dtype == torch.float32
            model = AutoModelForCausalLM.from_pretrained(
                p.model, revision=p.revision, dtype=dtype, trust_remote_code=p.trust_remote_code,
                disable_mmap=packing,
            )
        except OSError as exc:
            raise EcdError(f"cannot load model {p.model!r}: {str(exc).splitlines()[0]}") from None
        except Exception as exc:
            if type(exc).__name__ != "SafetensorError":
                raise
            raise EcdError(f"cannot load model {p.model!r}: its weights cannot be read ({exc}); the file is truncated "
                           "or damaged: fetch or make it again") from None
        context = getattr(model.config.get_text_config(), "max_position_embeddings", None)
        if context and p.max_new_tokens >= context:
            raise EcdError(f"max_new_tokens {p.max_new_tokens} leaves no room for a prompt in {p.model}'s context of "
                           f"{context} tokens (its max_position_embeddings): set it below {context}")
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        if not tok.chat_template:
            warnings.warn(f"{p.model} has no chat template; using a plain 'User:/Assistant:' template", stacklevel=2)
            tok.chat_template = _FALLBACK_TEMPLATE
        model.to(device).eval()
        if packing:
            pack_linears(model)
        model.config.use_cache = True
        self._model, self._tok, self._device = model, tok, device

    def generate(self, requests: list[Request], on_done: OnDone) -> None:
        import torch

        self._load()
        tok, model, p = self._tok, self._model, self.params
        texts = [tok.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True) for r in requests]
        prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        eos = set(as_list(model.generation_config.eos_token_id)) | {tok.eos_token_id}
        pick = SeededSampler([r.seed for r in requests], p.temperature, p.top_p).pick if p.temperature > 0 else greedy

        def report(i: int, g: Generated) -> None:
            on_done(i, Completion(text=tok.decode(g.tokens, skip_special_tokens=True),
                                  finish_reason="stop" if g.stopped else "length",
                                  prompt_tokens=len(prompts[i]), completion_tokens=len(g.tokens) + g.stopped))

        if torch.device(self._device).type == "cpu" and supports_packed(model):
            generate_packed(model, prompts, max_new_tokens=p.max_new_tokens, eos_ids=eos, width=p.batch_size,
                            cache_tokens=cache_tokens(model.config, p.kv_cache_gib,
                                                      next(model.parameters()).element_size()),
                            step_tokens=p.step_tokens, pick=pick, device=self._device, on_done=report)
        else:  # attention the packed loop does not compute (sliding windows, soft-capping, other families),
            # and GPUs, where a step is bound by kernel launches and the padded loop's few large ones won
            generate_continuous(model, prompts, max_new_tokens=p.max_new_tokens, eos_ids=eos,
                                pad_id=tok.pad_token_id, width=p.batch_size, pick=pick, device=self._device,
                                on_done=report)
