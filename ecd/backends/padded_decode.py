"""Generation with every slot busy: a decode loop that drops finished rows and refills their slots.

``model.generate`` on a padded batch keeps computing every row until the longest one ends, and on a
CPU the cost of a decoding step falls per row as the batch grows (SmolLM2-135M on 2 cores: 48 ms for
one row, 4.5 ms a row at 32, 3.5 ms a row at 64). So this loop keeps ``width`` rows in flight: a row
that emits an end-of-sequence token or reaches ``max_new_tokens`` leaves the batch (its key/value
cache rows are dropped), and waiting prompts are prefilled and merged into the batch when it falls
below three quarters full. Rows of different lengths share the cache through left padding and an
attention mask; each row keeps its own positions, so a row's tokens do not depend on its neighbours
(greedy outputs match ``generate``'s; ``bench/generation.py`` counts how many do, in ``make bench``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ecd.backends.decode import Generated, Picker, greedy


def _layer_class() -> type:
    """A cache layer whose keys and values live in a buffer with room to grow.

    ``DynamicLayer`` concatenates every new token onto the whole cache, copying all of it at each
    step: at 64 rows of a few hundred tokens that copy costs more than the step's attention. Here
    ``keys``/``values`` are views of the first ``n`` positions of a larger buffer that is written
    in place and reallocated (doubling) only when full.
    """
    import torch
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        def lazy_initialization(self, key_states: Any, value_states: Any) -> None:
            super().lazy_initialization(key_states, value_states)
            self.n = 0
            self.kbuf: Any = None
            self.vbuf: Any = None

        def _set(self, kbuf: Any, vbuf: Any, n: int) -> None:
            self.kbuf, self.vbuf, self.n = kbuf, vbuf, n
            self.keys, self.values = kbuf[:, :, :n], vbuf[:, :, :n]

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            new = key_states.size(2)
            if self.kbuf is None or self.n + new > self.kbuf.size(2):
                cap = max(2 * (self.n + new), 64)
                shape = (*key_states.shape[:2], cap, key_states.size(3))
                kbuf, vbuf = key_states.new_empty(shape), value_states.new_empty(shape)
                if self.n:
                    kbuf[:, :, :self.n], vbuf[:, :, :self.n] = self.keys, self.values
                self.kbuf, self.vbuf = kbuf, vbuf
            self.kbuf[:, :, self.n:self.n + new] = key_states
            self.vbuf[:, :, self.n:self.n + new] = value_states
            self._set(self.kbuf, self.vbuf, self.n + new)
            return self.keys, self.values

        def batch_select_indices(self, indices: Any) -> None:
            if self.is_initialized and self.n:
                # gather the filled positions only, into a buffer with the old one's room to grow
                shape = (len(indices), self.kbuf.size(1), self.kbuf.size(2), self.kbuf.size(3))
                kbuf, vbuf = self.kbuf.new_empty(shape), self.vbuf.new_empty(shape)
                torch.index_select(self.keys, 0, indices, out=kbuf[:, :, :self.n])
                torch.index_select(self.values, 0, indices, out=vbuf[:, :, :self.n])
                self._set(kbuf, vbuf, self.n)

        def drop_front(self, start: int) -> None:
            """Forget the first ``start`` positions (a view: the buffer keeps its room at the end)."""
            self._set(self.kbuf[:, :, start:], self.vbuf[:, :, start:], self.n - start)

        def stack(self, other: Any, pad_mine: int, pad_theirs: int) -> None:
            """Put ``other``'s rows under these, left-padded so that both end at the same position."""
            n = max(self.n + pad_mine, other.n + pad_theirs)
            b1, b2 = self.kbuf.size(0), other.kbuf.size(0)
            shape = (b1 + b2, self.kbuf.size(1), 2 * n, self.kbuf.size(3))
            kbuf, vbuf = self.kbuf.new_zeros(shape), self.vbuf.new_zeros(shape)
            kbuf[:b1, :, pad_mine:n], vbuf[:b1, :, pad_mine:n] = self.keys, self.values
            kbuf[b1:, :, pad_theirs:n], vbuf[b1:, :, pad_theirs:n] = other.keys, other.values
            self._set(kbuf, vbuf, n)

    return GrowingLayer


class _Batch:
    """The rows in flight: their request indices, attention mask, positions and key/value cache."""

    def __init__(self, cache: Any, mask: Any, rows: list[int], next_ids: Any) -> None:
        self.cache, self.mask, self.rows, self.next_ids = cache, mask, rows, next_ids

    def keep(self, keep: list[int]) -> None:
        import torch

        if len(keep) == len(self.rows):
            return
        idx = torch.tensor(keep, dtype=torch.long, device=self.mask.device)
        self.cache.batch_select_indices(idx)
        self.mask, self.next_ids = self.mask[idx], self.next_ids[idx]
        self.rows = [self.rows[k] for k in keep]
        self._trim()

    def _trim(self) -> None:
        """Drop leading columns that no remaining row attends to (padding of rows that left)."""
        used = self.mask.any(0).nonzero()
        start = int(used[0]) if len(used) else 0
        if start:
            self.mask = self.mask[:, start:]
            for layer in self.cache.layers:
                layer.drop_front(start)

    def merge(self, other: _Batch) -> None:
        """Add ``other``'s rows, left-padding whichever is shorter so that the last columns align."""
        import torch

        t1, t2 = self.mask.size(1), other.mask.size(1)
        t = max(t1, t2)

        def pad(x: Any, n: int) -> Any:
            return torch.cat([x.new_zeros((x.size(0), n)), x], dim=1) if n else x

        self.mask = torch.cat([pad(self.mask, t - t1), pad(other.mask, t - t2)], 0)
        for mine, theirs in zip(self.cache.layers, other.cache.layers):
            mine.stack(theirs, t - t1, t - t2)
        self.rows += other.rows
        self.next_ids = torch.cat([self.next_ids, other.next_ids], 0)


def _attention_kernels(device: Any) -> Any:
    """On CUDA, attention without cuDNN's kernel: cuDNN plans a graph for every new attention shape,
    and this loop's shapes change at every step (the cache grows by one, rows leave and join): on an
    H100 that planning was most of the loop's host time (figures in the README's real-model section)."""
    import contextlib

    import torch

    if torch.device(device).type != "cuda":
        return contextlib.nullcontext()  # CPU kernels are left as they are: outputs stay byte-identical
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


def generate_continuous(model: Any, prompts: Sequence[list[int]], *, max_new_tokens: int, eos_ids: set[int],
                        pad_id: int, width: int, pick: Picker = greedy, device: Any = "cpu",
                        on_done: Callable[[int, Generated], None] | None = None) -> list[Generated]:
    """Generate for every prompt (token ids) with at most ``width`` rows in flight; results in prompt order.

    ``pick`` chooses each row's next token from its logits (greedy by default; a sampler keyed by
    the request index keeps each request's own random stream). ``on_done(i, result)`` is called as
    each request finishes.
    """
    import torch
    from transformers.cache_utils import Cache

    layer_class = _layer_class()
    results: list[Generated | None] = [None] * len(prompts)
    out: dict[int, list[int]] = {}
    # longest prompts first: rows prefilled together pad little, and the long ones start early
    pending = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    batch: _Batch | None = None

    def finish(i: int, stopped: bool) -> None:
        results[i] = done = Generated(out.pop(i), stopped)
        if on_done:
            on_done(i, done)

    def prefill(rows: list[int]) -> _Batch:
        longest = max(len(prompts[i]) for i in rows)
        ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for k, i in enumerate(rows):
            ids[k, longest - len(prompts[i]):] = torch.tensor(prompts[i])
            mask[k, longest - len(prompts[i]):] = 1
        ids, mask = ids.to(device), mask.to(device)
        cache = Cache(layer_class_to_replicate=layer_class)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache,
                       use_cache=True, logits_to_keep=1).logits[:, -1, :]
        for i in rows:
            out[i] = []
        return _Batch(cache, mask, list(rows), pick(logits, list(rows)))

    with torch.inference_mode(), _attention_kernels(device):
        while pending or batch is not None:
            if pending and (batch is None or len(batch.rows) <= width * 3 // 4):
                room = width - (len(batch.rows) if batch else 0)
                new = prefill([pending.pop(0) for _ in range(min(room, len(pending)))])
                if batch is None:
                    batch = new
                else:
                    batch.merge(new)
            assert batch is not None  # rows are in flight, or were just prefilled
            # the tokens just chosen: keep them, end the rows that are done
            keep = []
            for k, (i, token) in enumerate(zip(batch.rows, batch.next_ids.tolist())):  # one device sync a step
                if token in eos_ids:
                    finish(i, True)
                    continue
                out[i].append(token)
                if len(out[i]) >= max_new_tokens:
                    finish(i, False)
                    continue
                keep.append(k)
            if not keep:
                batch = None
                continue
            batch.keep(keep)
            batch.mask = torch.cat([batch.mask, batch.mask.new_ones(batch.mask.size(0), 1)], 1)
            pos = batch.mask.sum(-1, keepdim=True) - 1
            logits = model(input_ids=batch.next_ids[:, None], attention_mask=batch.mask, position_ids=pos,
                           past_key_values=batch.cache, use_cache=True).logits[:, -1, :]
            batch.next_ids = pick(logits, batch.rows)
    return results  # type: ignore[return-value]
