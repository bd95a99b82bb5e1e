"""The packed decode loop's cache: one pool of keys and values per length class, committed page by page.

A row's keys and values live in the pool of its length class (classes about 1.25× apart, so a row
reads at most 1.25× its own length when its class attends together); a pool has room for every row
in flight, but its memory is an anonymous mapping the kernel commits as rows write and takes back as
they leave, so what is resident follows the tokens cached rather than the room (``docs/generation.md``).
"""

from __future__ import annotations

import math
import mmap
import sys
from typing import Any

from ecd.errors import EcdError

_FIRST_CLASS, _GROWTH = 64, 1.25
_MAP_NORESERVE = 0x4000  #: Linux's mmap flag (Python's mmap module names it from 3.13)


def kv_shape(cfg: Any) -> tuple[int, int, int, int]:
    """A text config's layers, key/value heads, head size and query heads per key/value head."""
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    return cfg.num_hidden_layers, kv_heads, head_dim, heads // kv_heads


def cache_bytes_per_token(cfg: Any, element_size: int) -> int:
    """Bytes of keys and values one token holds across the model's layers."""
    layers, kv_heads, head_dim, _ = kv_shape(cfg.get_text_config())
    return layers * 2 * kv_heads * head_dim * element_size


def cache_tokens(cfg: Any, gib: float, element_size: int) -> int:
    """How many tokens' keys and values ``gib`` GiB holds (``kv_cache_gib`` as the packed loop's budget)."""
    return int(gib * 2**30 / cache_bytes_per_token(cfg, element_size))


def length_class(length: int) -> int:
    """The smallest pool capacity (64, 80, 112, 144, ...: about 1.25× apart, multiples of 16) that holds ``length``."""
    cap = _FIRST_CLASS
    while cap < length:
        cap = math.ceil(cap * _GROWTH / 16) * 16
    return cap


def held_bytes(n: int, shape: tuple[int, int, int], itemsize: int) -> int:
    """Resident bytes of a row of ``n`` cached tokens in a pool of ``shape`` (layers, kv heads, head
    size): each layer's keys and values per head, in whole pages (what :class:`Pool` commits)."""
    layers, heads, dim = shape
    return layers * 2 * heads * -(-n * dim * itemsize // mmap.PAGESIZE) * mmap.PAGESIZE


class Pool:
    """The cache of one length class: ``kv[layer, 0|1, slot, kv_head, position, dim]``, room for ``slots`` rows.

    One pool a class, with room for every row in flight, so a step's decoding rows of a class attend
    in one call. Occupied slots are ``0..len(rows)-1``, so attention reads a view, never a gathered
    copy: a row that leaves is replaced by the pool's last one (one row copied).

    On a CPU the memory is an anonymous mapping (:func:`lazy_map`): the kernel commits a page when a
    row first writes it, and a slot's pages go back when it empties, so resident memory follows the
    tokens in flight, not the room (fixed-size blocks, the design before, held 1.17× their budget at
    IFBench's peak in class rounding and partly filled blocks)."""

    def __init__(self, cap: int, slots: int, shape: tuple[int, int, int], dtype: Any, device: Any) -> None:
        import torch

        layers, heads, dim = shape
        self.cap, self.slots = cap, slots
        self.rows: list[int] = []  # request index per occupied slot
        size = (layers, 2, slots, heads, cap, dim)
        self._map = lazy_map(math.prod(size) * dtype.itemsize) if torch.device(device).type == "cpu" else None
        # zeros, not stale memory: masked keys still enter SDPA's products, and a NaN there would reach
        # the row's output (a fresh mapping reads as zeros; a released page reads as zeros again)
        self.kv = (torch.frombuffer(self._map, dtype=dtype).view(size) if self._map is not None
                   else torch.zeros(size, dtype=dtype, device=device))

    def add(self, request: int) -> int:
        self.rows.append(request)
        return len(self.rows) - 1

    def remove(self, slot: int, length: int) -> int | None:
        """Free ``slot``; returns the request moved into it (the pool's last row, ``length`` tokens long), if any."""
        last = len(self.rows) - 1
        moved = None
        if slot != last:
            self.kv[:, :, slot, :, :length] = self.kv[:, :, last, :, :length]
            moved = self.rows[slot] = self.rows[last]
        self.rows.pop()
        self._release(last)
        return moved

    def _release(self, slot: int) -> None:
        """Give a slot's whole pages back to the kernel (they read as zeros when next touched)."""
        if self._map is None:
            return
        layers, _, slots, heads, cap, dim = self.kv.shape
        span = heads * cap * dim * self.kv.element_size()
        page = mmap.PAGESIZE
        for region in range(layers * 2):
            start = (region * slots + slot) * span
            first, end = -(-start // page) * page, (start + span) // page * page
            if end > first:
                self._map.madvise(mmap.MADV_DONTNEED, first, end - first)


def lazy_map(nbytes: int) -> mmap.mmap:
    """Private anonymous memory that costs nothing until written: not reserved against the machine's
    memory (Linux's ``MAP_NORESERVE``), in small pages (a huge page would commit 2 MB at a row's first token)."""
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | (_MAP_NORESERVE if sys.platform == "linux" else 0)
    try:
        m = mmap.mmap(-1, max(nbytes, 1), flags=flags)
    except OSError as exc:  # strict overcommit (vm.overcommit_memory=2) counts the room as if it were used
        raise EcdError(f"cannot map {nbytes / 2**30:.1f} GiB of address space for a cache pool ({exc.strerror}); "
                       "this machine reserves mapped memory up front: lower batch_size (rows in flight), "
                       "or allow overcommit (vm.overcommit_memory 0 or 1)") from None
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        m.madvise(mmap.MADV_NOHUGEPAGE)
    return m
