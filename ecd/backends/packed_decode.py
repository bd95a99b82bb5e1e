"""Generation whose cost per step follows its own rows: packed tokens, the cache pooled by length.

A decode step reads every cached key and value once. With one padded batch (``padded_decode``, the
loop this one replaced on CPUs) a row attends over the width of the longest row beside it, and a
batch's prefill pads every prompt to the longest: on IFBench's prompts (median 92 tokens, longest 2,591) that loop
took 11 minutes to its first answer, ran at a quarter of its IFEval rate and held 8 GB for a 135 M
model. Here:

- **No padding in the matrix products.** A step's tokens are packed into one sequence: each row in
  flight brings its next token, prompts still being read bring a chunk, up to ``step_tokens`` in all.
  Embeddings, linear layers, norms and rotary positions run once over that sequence, each token at
  its row's own position.
- **Attention over each row's own length.** Our attention (registered with ``transformers``'
  attention interface) keeps each row's keys and values in the pool of its length class (classes
  about 1.25× apart; a row moves up a class as it grows): a class's decoding rows attend in one call
  over its longest row, so a row reads at most 1.25× its own length; a prompt chunk attends alone
  over its own row.
- **Memory bounded by the rows in flight.** Rows are admitted in request order while the cache has
  room for their prompt and ``max_new_tokens`` (``cache_tokens``); a long prompt waits for room
  instead of widening everyone. A pool's memory is committed page by page as its rows write and
  given back as they leave, so what is resident follows the tokens actually cached.
- **An opening read once.** A prompt that starts as one a row in flight has read (a chat template's
  system prompt, a task's instructions) copies that row's keys and values for it.

A row's products are per token and its attention per row or masked per row, so its neighbours reach
it only through the last bits of attention's sums, whose order follows the call's shape (measured in
``docs/generation.md``: logits within 1e-4); greedy answers are tested against ``generate`` one prompt
at a time, on short, long and mixed prompts. ``bench/generation.py`` measures it against plain
``generate`` and ``transformers``' continuous batching.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ecd.backends.decode import Generated, Picker, greedy
from ecd.backends.kv_pool import Pool, held_bytes, kv_shape, length_class

#: model families whose attention runs through transformers' attention interface with full attention
#: on every layer (no sliding window, no soft-capping): the packed loop is exact for them
PACKED_FAMILIES = frozenset({"llama", "mistral", "qwen2", "qwen3"})
_NAME = "ecd_packed"
#: fewest tokens worth copying from another row rather than reading (a chat template's opening alone is more)
MIN_SHARED = 8


def supports_packed(model: Any) -> bool:
    """Whether ``model``'s attention is one this loop computes exactly (else the padded loop runs)."""
    cfg = model.config.get_text_config()
    if cfg.model_type not in PACKED_FAMILIES:
        return False
    if any(t != "full_attention" for t in getattr(cfg, "layer_types", None) or []):
        return False
    sliding = getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True)
    return not sliding and not getattr(cfg, "attn_logit_softcapping", None)


@dataclass
class PackedStats:
    """What a run of the packed loop held at its peak (for tests and benchmarks)."""

    steps: int = 0
    peak_rows: int = 0  #: rows in flight
    peak_tokens: int = 0  #: tokens in the cache
    preempted: int = 0  #: rows that gave their cache up to make room, to be read again later
    peak_cache_bytes: int = 0  #: bytes of keys and values the rows in flight hold (in whole pages)
    peak_step_tokens: int = 0  #: tokens in one step's packed sequence
    shared_tokens: int = 0  #: prompt tokens whose keys and values were copied from a row in flight, not read


@dataclass
class _Row:
    prompt: list[int]
    feed: list[int]  #: tokens to read before the next pick: the prompt, or prompt and answer so far after a preemption
    n: int = 0  #: tokens in the cache
    pool: Pool | None = None
    slot: int = -1
    out: list[int] = field(default_factory=list)
    next_id: int | None = None  #: the token chosen last, fed at the next step


@dataclass
class PoolStep:
    """One pool's decoding rows in this step: where their tokens sit in the packed sequence and the cache."""

    pool: Pool
    slots: Any  #: slot of each decoding row
    start: int  #: the rows' tokens are ``start:start + len(slots)`` of the packed sequence
    cells: Any  #: where their keys then values go in a layer's pool seen as [-1, dim] (one copy a layer)
    count: int  #: the pool's occupied slots
    width: int  #: the longest row, after this step's token
    mask: Any  #: [count, 1, 1, width], -inf past each slot's row; None when all rows are as long
    full: bool  #: every occupied slot decodes in this step, in slot order


@dataclass
class _ChunkStep:
    """A prompt chunk: its tokens ``start:end`` of the packed sequence go to cache positions ``n:n+end-start``."""

    pool: Pool
    slot: int
    start: int
    end: int
    n: int
    mask: Any  #: causal, with the grouped heads folded into the query length


@dataclass
class _Step:
    pools: list[PoolStep]
    chunks: list[_ChunkStep]


def _attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, scaling: float | None = None,
               ecd_step: _Step | None = None, **kwargs: Any) -> tuple[Any, None]:
    """Attention for a packed step (``query`` [1, heads, T, dim]; ``key``/``value`` [1, kv_heads, T, dim]).

    Grouped-query heads are folded into the query length (a kv head's ``group`` query heads become
    ``group`` query positions), so no key or value is ever repeated."""
    import torch
    import torch.nn.functional as F

    if ecd_step is None:
        raise RuntimeError(f"attention {_NAME!r} runs only inside ecd's packed decode loop")
    layer = module.layer_idx
    q, k, v = query[0], key[0], value[0]
    heads, total, dim = q.shape
    kv_heads = k.size(0)
    group = heads // kv_heads
    out = q.new_empty((total, heads, dim))
    for s in ecd_step.pools:
        end = s.start + len(s.slots)
        block = s.pool.kv[layer]
        block.view(-1, dim).index_copy_(0, s.cells, torch.stack((k[:, s.start:end], v[:, s.start:end])).view(-1, dim))
        keys, values = block[0], block[1]
        rows = q[:, s.start:end].reshape(kv_heads, group, -1, dim).permute(2, 0, 1, 3)  # [rows, kv_heads, group, dim]
        if not s.full:
            padded = rows.new_zeros((s.count, kv_heads, group, dim))
            padded[s.slots] = rows
            rows = padded
        o = F.scaled_dot_product_attention(rows, keys[:s.count, :, :s.width], values[:s.count, :, :s.width],
                                           attn_mask=s.mask, scale=scaling)
        if not s.full:
            o = o[s.slots]
        out[s.start:end] = o.reshape(-1, heads, dim)
    for c in ecd_step.chunks:
        t = c.end - c.start
        keys, values = c.pool.kv[layer, 0, c.slot], c.pool.kv[layer, 1, c.slot]
        keys[:, c.n:c.n + t] = k[:, c.start:c.end]
        values[:, c.n:c.n + t] = v[:, c.start:c.end]
        rows = q[:, c.start:c.end].reshape(kv_heads, group * t, dim)
        o = F.scaled_dot_product_attention(rows[None], keys[None, :, :c.n + t], values[None, :, :c.n + t],
                                           attn_mask=c.mask, scale=scaling)
        out[c.start:c.end] = o[0].view(kv_heads, group, t, dim).permute(2, 0, 1, 3).reshape(t, heads, dim)
    return out[None], None


@contextlib.contextmanager
def _packed_attention(model: Any) -> Iterator[None]:
    from transformers import AttentionInterface

    AttentionInterface.register(_NAME, _attention)
    configs = {id(c): c for c in (model.config, model.config.get_text_config())}.values()
    before = [c._attn_implementation for c in configs]
    try:
        for c in configs:
            c._attn_implementation = _NAME
        yield
    finally:
        for c, name in zip(configs, before):
            c._attn_implementation = name


def generate_packed(model: Any, prompts: Sequence[list[int]], *, max_new_tokens: int, eos_ids: set[int],
                    width: int, cache_tokens: int, step_tokens: int = 512, pick: Picker = greedy,
                    device: Any = "cpu", on_done: Callable[[int, Generated], None] | None = None,
                    stats: PackedStats | None = None, share_prefixes: bool = True) -> list[Generated]:
    """Generate for every prompt (token ids), at most ``width`` rows and ``cache_tokens`` cached tokens
    in flight and ``step_tokens`` tokens a step; results in prompt order, ``on_done(i, result)`` as each
    finishes (requests are started in order, so early requests finish early).

    The budget bounds the tokens actually cached, not what rows might reach: a row is admitted when
    its prompt and ``max_new_tokens`` fit beside what the others hold now, and when the others' growth
    would overflow, the newest row gives its cache up and is read again later, prompt and answer so
    far (vLLM's preemption by recomputation; its answer is unchanged). A row longer than the budget
    still runs, alone. ``pick`` chooses each row's next token from its logits (greedy by default; a
    sampler keyed by the request index keeps each request's own random stream).

    A prompt that begins with tokens a row in flight has already read (a chat template's system
    prompt, a task template's instructions) copies that row's keys and values for them instead of
    reading them again (``share_prefixes``; vLLM's and SGLang's prefix caching, here only between rows
    in flight, so it holds no memory of its own)."""
    import torch

    if any(not p for p in prompts):
        raise ValueError("an empty prompt: the chat template gave no tokens")
    layers, kv_heads, head_dim, group = kv_shape(model.config.get_text_config())
    dtype = next(model.parameters()).dtype
    classes: dict[int, Pool] = {}  # length class → its pool
    rows = {i: _Row(list(p), list(p)) for i, p in enumerate(prompts)}
    results: list[Generated | None] = [None] * len(prompts)
    waiting = list(range(len(prompts)))
    waiting.reverse()  # popped from the end: request order
    flight: list[int] = []  # admission order
    preemptions = shared = 0
    step_tokens = max(step_tokens, 16)
    kv_or_v = torch.arange(2, device=device)[:, None, None]
    head = torch.arange(kv_heads, device=device)[None, :, None]

    def additive(allowed: Any) -> Any:
        """A boolean mask as the additive one SDPA's CPU kernel turns it into, once a step instead of once a layer."""
        return torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill_(~allowed, float("-inf"))

    def need(i: int) -> int:
        return len(rows[i].prompt) + max_new_tokens

    def place(i: int, length: int) -> None:
        """Put row ``i`` in the pool of the class for ``length`` tokens, moving its cache if it lives elsewhere."""
        r = rows[i]
        cap = length_class(length)
        if r.pool is not None and r.pool.cap == cap:
            return
        pool = classes.get(cap)
        if pool is None:
            pool = classes[cap] = Pool(cap, width, (layers, kv_heads, head_dim), dtype, device)
        slot = pool.add(i)
        if r.pool is not None:
            pool.kv[:, :, slot, :, :r.n] = r.pool.kv[:, :, r.slot, :, :r.n]
            leave(i)
        r.pool, r.slot = pool, slot

    def leave(i: int) -> None:
        r = rows[i]
        pool = r.pool
        assert pool is not None
        last = pool.rows[-1]
        moved = pool.remove(r.slot, rows[last].n)
        if moved is not None:
            rows[moved].slot = r.slot
        if not pool.rows:
            del classes[pool.cap]
        r.pool = None

    def share(i: int) -> int:
        """Copy into row ``i`` (just placed, nothing cached) the keys and values of the longest start of
        its tokens that a row in flight has cached; returns how many (at least one token is left to read,
        for the logits of its next pick)."""
        r = rows[i]
        best, donor = 0, None
        for j in flight:
            d = rows[j]
            if j != i and d.n > best and d.feed[0] == r.feed[0]:
                length = _common_prefix(d.feed, r.feed, min(d.n, len(r.feed) - 1))
                if length > best:
                    best, donor = length, d
        if donor is None or best < MIN_SHARED:
            return 0
        assert r.pool is not None and donor.pool is not None
        r.pool.kv[:, :, r.slot, :, :best] = donor.pool.kv[:, :, donor.slot, :, :best]
        r.n = best
        return best

    def finish(i: int, stopped: bool, stop_token: int | None = None) -> None:
        leave(i)
        r = rows.pop(i)
        flight.remove(i)
        results[i] = done = Generated(r.out, stopped, stop_token)
        if on_done:
            on_done(i, done)

    def preempt(i: int) -> None:
        """Drop row ``i``'s cache and put it first in line, to read its prompt and answer so far again."""
        nonlocal preemptions
        leave(i)
        flight.remove(i)
        r = rows[i]
        r.feed, r.n, r.next_id = r.prompt + r.out, 0, None
        waiting.append(i)
        preemptions += 1

    def plan() -> tuple[list[int], list[int], list[tuple[int, int]], list[int], list[int], _Step]:
        """This step's packed token ids and positions, the rows fed (with their token counts), the rows
        that pick a token and their rows of the packed sequence."""
        nonlocal shared
        while True:
            decoding = [i for i in flight if rows[i].next_id is not None]
            cached = sum(rows[i].n for i in flight) + len(decoding)  # after this step's decoding tokens
            budget = max(step_tokens - len(decoding), step_tokens // 4)
            chunks: list[tuple[int, int]] = []
            for i in [i for i in flight if rows[i].next_id is None]:  # prompts being read, oldest first
                room = budget if len(flight) == 1 else min(budget, cache_tokens - cached)
                t = min(len(rows[i].feed) - rows[i].n, room)
                if t > 0:
                    chunks.append((i, t))
                    budget, cached = budget - t, cached + t
            if len(flight) > 1 and (cached > cache_tokens or not (decoding or chunks)):
                preempt(flight[-1])  # the others' growth overflows: the newest gives way
                continue
            break
        while waiting and budget > 0 and len(flight) < width and (not flight or cached + need(waiting[-1]) <= cache_tokens):
            i = waiting.pop()
            flight.append(i)
            place(i, len(rows[i].feed))
            copied = share(i) if share_prefixes else 0
            shared += copied
            t = min(len(rows[i].feed) - copied, budget)
            chunks.append((i, t))
            budget, cached = budget - t, cached + copied + t
        for i in decoding:
            place(i, rows[i].n + 1)
        ids: list[int] = []
        positions: list[int] = []
        picks: list[int] = []
        logit_rows: list[int] = []
        by_pool: dict[int, list[int]] = {}
        for i in decoding:
            by_pool.setdefault(id(rows[i].pool), []).append(i)
        pool_steps = []
        for members in by_pool.values():
            pool = rows[members[0]].pool
            assert pool is not None
            members.sort(key=lambda i: rows[i].slot)
            first = len(ids)
            for i in members:
                picks.append(i)
                logit_rows.append(len(ids))
                ids.append(rows[i].next_id)  # type: ignore[arg-type]
                positions.append(rows[i].n)
            lengths = [rows[j].n + (rows[j].next_id is not None) for j in pool.rows]
            width_ = max(lengths)
            mask = None
            if min(lengths) < width_:
                allowed = torch.arange(width_, device=device)[None, :] < torch.tensor(lengths, device=device).clamp(min=1)[:, None]
                mask = additive(allowed)[:, None, None, :]
            slots = [rows[i].slot for i in members]
            slot_t = torch.tensor(slots, dtype=torch.long, device=device)
            at = torch.tensor([rows[i].n for i in members], dtype=torch.long, device=device)
            # block[layer] is [2, slots, kv_heads, cap, dim]: key/value c of head h of slot s at position n
            cells = ((kv_or_v * pool.slots + slot_t) * kv_heads + head) * pool.cap + at
            pool_steps.append(PoolStep(pool, slot_t, first, cells.reshape(-1), len(pool.rows), width_, mask,
                                        slots == list(range(len(pool.rows)))))
        chunk_steps = []
        for i, t in chunks:
            r = rows[i]
            start = len(ids)
            ids.extend(r.feed[r.n:r.n + t])
            positions.extend(range(r.n, r.n + t))
            if r.n + t == len(r.feed):
                picks.append(i)
                logit_rows.append(len(ids) - 1)
            causal = torch.arange(r.n + t, device=device)[None, :] <= torch.arange(r.n, r.n + t, device=device)[:, None]
            assert r.pool is not None
            chunk_steps.append(_ChunkStep(r.pool, r.slot, start, len(ids), r.n, additive(causal).repeat(group, 1)))
        fed = [(i, 1) for i in decoding] + chunks
        return ids, positions, fed, picks, logit_rows, _Step(pool_steps, chunk_steps)

    with torch.inference_mode(), _packed_attention(model):
        while waiting or flight:
            ids, positions, fed, picks, logit_rows, step = plan()
            if stats is not None:
                stats.steps += 1
                stats.peak_rows = max(stats.peak_rows, len(flight))
                stats.peak_tokens = max(stats.peak_tokens, sum(rows[i].n for i in flight))
                stats.peak_step_tokens = max(stats.peak_step_tokens, len(ids))
                stats.peak_cache_bytes = max(stats.peak_cache_bytes, sum(held_bytes(rows[i].n, (layers, kv_heads, head_dim), dtype.itemsize) for i in flight))
                stats.preempted = preemptions
                stats.shared_tokens = shared
            logits = model(input_ids=torch.tensor([ids], device=device),
                           position_ids=torch.tensor([positions], device=device), use_cache=False,
                           logits_to_keep=torch.tensor(logit_rows, dtype=torch.long, device=device), ecd_step=step).logits[0]
            for i, t in fed:
                rows[i].n += t
            chosen = pick(logits, picks).tolist() if picks else []  # one device sync a step
            for i, token in zip(picks, chosen):
                r = rows[i]
                if token in eos_ids:
                    finish(i, True, token)
                    continue
                r.out.append(token)
                if len(r.out) >= max_new_tokens:
                    finish(i, False)
                    continue
                r.next_id = token
    return results  # type: ignore[return-value]


def _common_prefix(a: list[int], b: list[int], limit: int) -> int:
    """How many leading tokens ``a`` and ``b`` share, at most ``limit`` (a binary search on slices compared in C)."""
    low, high = 0, min(limit, len(a), len(b))
    while low < high:
        mid = (low + high + 1) // 2
        if a[:mid] == b[:mid]:
            low = mid
        else:
            high = mid - 1
    return low
