"""What both local decode loops share: the next-token choice, a finished row, and packed linear layers.

The transformers backend decodes with ``packed_decode`` on a CPU and ``padded_decode`` elsewhere;
both take a ``Picker`` (greedy, or ``SeededSampler``: each request its own random stream, so an
answer never depends on which rows shared its steps) and give a ``Generated`` per prompt.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: next-token choice for the rows in flight: (logits [rows, vocab], request index per row) → token ids [rows]
Picker = Callable[[Any, list[int]], Any]
#: oneDNN primitives kept at most (its default 1,024): one packed step's linear shapes and the output layer
PRIMITIVE_CACHE = 8


@dataclass
class Generated:
    tokens: list[int]  #: the new tokens, without the end-of-sequence token
    stopped: bool  #: ended by an end-of-sequence token (False: cut at max_new_tokens)
    stop_token: int | None = None  #: the end-of-sequence token that ended it (packed loop)


def greedy(logits: Any, rows: list[int]) -> Any:
    """The most likely token of each row, the first on a tie (``argmax``'s choice, in a third of its
    time on a CPU: 0.9 against 2.3 ms for 64 rows of a 49,152-token vocabulary)."""
    return logits.max(-1).indices


def pack_linears(model: Any, rows: int = 64) -> int:
    """Run a CPU fp32 model's linear layers through oneDNN with their weights packed once; returns
    how many were swapped (0 where oneDNN or its packed-linear op is missing, or off the CPU).

    Why: torch's CPU matmul calls MKL's sgemm, which on the 2-core AMD machine here ran
    SmolLM2-135M's decode-step products at 70-100 GFLOP/s and its 49,152-wide output layer at 40-50;
    oneDNN's prepacked linear (the kernel Inductor's freezing uses on CPU) ran them at 100-130 and
    about 100 (``bench/generation.py`` measures the whole effect). Its sums differ from MKL's in the
    last bits, so a near-tie between two tokens can break the other way: the benchmark counts the
    greedy answers that still equal ``generate``'s. Packed for ``rows`` rows, a row's result does
    not depend on how many rows share the call (checked from 1 to 200), which the decode loop needs.

    oneDNN keeps every primitive it builds (one per layer shape and row count, and a packed step's
    row count changes every step) up to 1,024 of them: on IFBench that held 0.2 GB more after the
    loop than before it. Eight, one step's shapes, were as fast (``docs/generation.md``): the cap is
    set here, before the process's first oneDNN primitive, unless ``ONEDNN_PRIMITIVE_CACHE_CAPACITY``
    is set already (oneDNN reads it once).
    """
    import torch

    found = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    if not torch.backends.mkldnn.is_available() or found is None:
        return 0
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(PRIMITIVE_CACHE))
    op: Any = found

    class PackedLinear(torch.nn.Module):
        def __init__(self, linear: torch.nn.Linear) -> None:
            super().__init__()
            self.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), rows)
            self.bias = None if linear.bias is None else linear.bias.detach()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return op(x, self.packed, self.bias, "none", [], "")

    swaps = [(parent, name) for parent in model.modules() for name, child in parent.named_children()
             if type(child) is torch.nn.Linear and child.weight.device.type == "cpu"
             and child.weight.dtype == torch.float32]
    for k, (parent, name) in enumerate(swaps):  # one at a time: each fp32 weight is freed once packed
        try:
            packed = PackedLinear(getattr(parent, name))
        except RuntimeError:  # a CPU whose oneDNN build cannot pack (some ARM builds) keeps torch's matmul
            if k == 0:
                return 0
            raise
        setattr(parent, name, packed)
    return len(swaps)


def as_list(x: Any) -> list[int]:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


class SeededSampler:
    """Sampling where each request draws from its own ``torch.Generator`` (seeded by the request),
    so a request gives the same text whatever batch it lands in and whichever rows are in flight."""

    def __init__(self, seeds: list[int], temperature: float, top_p: float) -> None:
        import torch

        self.temperature, self.top_p = temperature, top_p
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]

    def pick(self, logits: Any, rows: list[int]) -> Any:
        """The next token of each row in flight (``rows``: the request index of each row)."""
        import torch

        probs = torch.softmax(logits.float() / self.temperature, dim=-1).cpu()
        if self.top_p < 1.0:
            sorted_p, idx = probs.sort(dim=-1, descending=True)
            drop = sorted_p.cumsum(-1) - sorted_p > self.top_p
            sorted_p[drop] = 0.0
            probs = torch.zeros_like(probs).scatter(-1, idx, sorted_p)
        drawn = [torch.multinomial(probs[k], 1, generator=self.generators[r]).item() for k, r in enumerate(rows)]
        return torch.tensor(drawn, dtype=torch.long, device=logits.device)
