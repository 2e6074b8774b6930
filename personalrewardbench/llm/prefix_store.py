"""Which prompt prefixes to compute once: the KV store of earlier prompts and the shared-prefix tree of a batch."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

Tokens = tuple[int, ...]
KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values of shape (heads, length, head_dim)

MIN_SHARED = 24  # a shared prefix shorter than this is not worth a separate forward pass


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if len(diff) else n


# ----------------------------------------------------------------------------- the prefix store


@dataclass
class _Entry:
    key: Tokens
    tokens: np.ndarray
    kv: KV
    nbytes: int


class PrefixStore:
    """KV caches of token sequences computed before, matched by longest common prefix (LRU, byte budget)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, int(max_bytes))
        self.entries: OrderedDict[Tokens, _Entry] = OrderedDict()
        self.bytes = 0
        self.reused_tokens = 0

    def match(self, tokens: np.ndarray, limit: int) -> tuple[_Entry | None, int]:
        """The entry sharing the longest prefix with ``tokens`` (at most ``limit`` tokens) and that length."""
        best, best_n = None, 0
        for e in self.entries.values():
            if best_n >= limit:
                break
            n = min(common_prefix(e.tokens, tokens), limit)
            if n > best_n:
                best, best_n = e, n
        if best is not None:
            self.entries.move_to_end(best.key)
        return best, best_n

    def add(self, tokens: Tokens, kv: KV, *, copy: bool = False) -> None:
        """Keep ``kv`` for ``tokens`` (``copy``: views into a bigger buffer, copied only when kept)."""
        if tokens in self.entries or self.max_bytes == 0:
            return
        nbytes = sum(k.numel() * k.element_size() * 2 for k, _ in kv)
        if nbytes > self.max_bytes:
            return
        if copy:
            kv = [(k.clone(), v.clone()) for k, v in kv]
        self.entries[tokens] = _Entry(tokens, np.asarray(tokens, dtype=np.int64), kv, nbytes)
        self.bytes += nbytes
        while self.bytes > self.max_bytes:
            _, old = self.entries.popitem(last=False)
            self.bytes -= old.nbytes

    def clear(self) -> None:
        self.entries.clear()
        self.bytes = 0


def shared_prefixes(prompts: Sequence[Tokens], min_shared: int = MIN_SHARED) -> list[tuple[Tokens, list[int]]]:
    """Prefixes shared by two or more prompts, parents before children, each with the prompts under it.

    The LCP-interval tree of the sorted prompts: an interval's prefix is the
    minimum LCP of its adjacent members; a node is kept when it adds at least
    ``min_shared`` tokens to its kept parent. A prefix always leaves each member
    at least one token of its own (that token's logits are the answer).
    """
    order = sorted(range(len(prompts)), key=lambda i: prompts[i])
    arrays = [np.asarray(prompts[i], dtype=np.int64) for i in order]
    lcp = [common_prefix(arrays[k], arrays[k + 1]) for k in range(len(order) - 1)]
    out: list[tuple[Tokens, list[int]]] = []

    def visit(lo: int, hi: int, parent: int) -> None:  # members order[lo..hi], inclusive
        if lo >= hi:
            return
        shared = min(lcp[lo:hi])  # the members' common prefix; the tree splits where it is reached
        depth = min(shared, min(len(prompts[order[k]]) for k in range(lo, hi + 1)) - 1)
        kept = depth - parent >= min_shared
        if kept:
            out.append((tuple(prompts[order[lo]][:depth]), [order[k] for k in range(lo, hi + 1)]))
        start = lo
        for k in range(lo, hi + 1):
            if k == hi or lcp[k] <= shared:
                visit(start, k, depth if kept else parent)
                start = k + 1

    visit(0, len(order) - 1, 0)
    return out
