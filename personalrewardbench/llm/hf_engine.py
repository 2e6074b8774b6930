"""Forward passes for the transformers backend: shared-prefix reuse and ragged batched decoding.

Two things make LLM-judge workloads cheap on a small model, and neither is in
``model.generate``:

1. **Prefix reuse.** Judge prompts share long token prefixes: the judge
   instruction for every prompt; a user's history (memory judge) or persona and
   demos (SynthesizeMe) for all of that user's prompts; the whole prompt for a
   retry. :class:`PrefixStore` keeps the KV cache of prompts computed before
   (LRU, a byte budget) and :func:`shared_prefixes` finds the prefixes shared
   inside a batch (an LCP-interval tree over the sorted prompts); each shared
   token is computed once and every row only runs its own suffix.
2. **Ragged batched decoding.** Rows with different prefix lengths and suffix
   lengths run in one batch: the KV cache is laid out as
   ``[left pad][prefix][suffix][right pad][generated]`` in a preallocated
   buffer (no per-step re-concatenation), with a 2-D attention mask over the
   holes and explicit positions. Finished rows leave the batch. Sampling uses a
   per-row seeded generator, so a row's sample does not depend on its batch.

Every forward pass first checks the caller's deadline
(:func:`personalrewardbench.llm.base.deadline_scope`), so a long decode stops within one step of it.

Numerically, a reused prefix gives the same K/V as recomputing it (a causal
model's prefix does not see later tokens); results agree with a plain forward
pass to float rounding, which ``tests/llm/test_hf_engine.py`` checks on SmolLM2.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from personalrewardbench.llm.base import check_deadline
from personalrewardbench.llm.prefix_store import KV, MIN_SHARED, PrefixStore, Tokens, shared_prefixes

PAD_SLACK = 1.25  # a prefill chunk runs at most this many padded tokens per real suffix token


# ----------------------------------------------------------------------------- the KV buffer cache


def _buffer_layer_class() -> type:
    from transformers.cache_utils import DynamicLayer

    class BufferLayer(DynamicLayer):
        """A DynamicLayer over a preallocated buffer: appending writes in place instead of concatenating."""

        def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int) -> None:
            super().__init__()
            self._k, self._v, self._n = keys, values, length
            self.device, self.is_initialized = keys.device, True
            self._views()

        def _views(self) -> None:
            self.keys, self.values = self._k[:, :, :self._n], self._v[:, :, :self._n]

        def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
            pass

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
            q = key_states.shape[-2]
            if self._n + q > self._k.shape[-2]:  # grow (rare: the buffer is sized for the whole run)
                grow = max(q, self._k.shape[-2])
                pad = (*self._k.shape[:2], grow, self._k.shape[-1])
                self._k = torch.cat([self._k, self._k.new_zeros(pad)], dim=-2)
                self._v = torch.cat([self._v, self._v.new_zeros(pad)], dim=-2)
            self._k[:, :, self._n:self._n + q] = key_states
            self._v[:, :, self._n:self._n + q] = value_states
            self._n += q
            self._views()
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self._n

        def crop(self, tokens_to_remove: int) -> None:
            if tokens_to_remove > 0:
                raise ValueError("crop takes a negative count")
            self._n += tokens_to_remove
            self._views()

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            self._k, self._v = self._k[indices], self._v[indices]
            self._views()

        def reset(self) -> None:
            self._n = 0
            self._views()

    return BufferLayer


_BUFFER_LAYER: type | None = None


def buffer_cache(keys: Sequence[torch.Tensor], values: Sequence[torch.Tensor], length: int) -> Any:
    """A transformers Cache whose layer ``i`` holds ``keys[i]``/``values[i]`` (B, heads, capacity, dim), ``length`` valid."""
    global _BUFFER_LAYER
    from transformers.cache_utils import DynamicCache

    if _BUFFER_LAYER is None:
        _BUFFER_LAYER = _buffer_layer_class()
    cache = DynamicCache()
    cache.layers = [_BUFFER_LAYER(k, v, length) for k, v in zip(keys, values, strict=True)]
    return cache


# ----------------------------------------------------------------------------- the engine


@dataclass
class Sampling:
    max_new: list[int]  # per row
    temperature: float = 0.0
    top_p: float = 1.0
    seeds: list[int] | None = None  # per row; sampling only
    stop: tuple[str, ...] = ()
    eos: frozenset[int] = frozenset()


@dataclass
class Generated:
    tokens: list[int] = field(default_factory=list)
    stopped: bool = False  # eos or a stop string (else the token cap)


@dataclass
class _Batch:
    cache: Any
    mask: torch.Tensor  # (B, length) 1 = real token
    next_pos: torch.Tensor  # (B,) position of the next token of each row
    logits: torch.Tensor  # (B, vocab) next-token logits after each prompt


class Engine:
    """Prefill with prefix reuse, then choice scoring or decoding, for one transformers causal LM."""

    def __init__(self, model: Any, pad_id: int, device: str, *, store_bytes: int,
                 tokens_per_forward: int = 16384, kv_bytes_per_batch: int = 2 << 30) -> None:
        self.model, self.pad_id, self.device = model, int(pad_id), device
        self.store = PrefixStore(store_bytes)
        self.min_shared = MIN_SHARED  # shortest prefix shared inside a batch that gets its own forward pass
        self.tokens_per_forward = tokens_per_forward
        self.kv_bytes_per_batch = kv_bytes_per_batch
        self.computed_tokens = 0  # prompt tokens actually run through the model
        params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        self._kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        self._head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self._layers = cfg.num_hidden_layers
        self.kv_bytes_per_token = 2 * self._layers * self._kv_heads * self._head_dim * model.dtype.itemsize

    # ---- splitting -------------------------------------------------------
    def split(self, lengths: Sequence[int], extra: int = 0) -> list[list[int]]:
        """Consecutive index groups whose padded tokens and KV buffer fit the per-forward budgets."""
        groups: list[list[int]] = []
        cur: list[int] = []
        width = 0
        for i, n in enumerate(lengths):
            w = max(width, n + extra)
            if cur and ((len(cur) + 1) * w > self.tokens_per_forward
                        or (len(cur) + 1) * w * self.kv_bytes_per_token > self.kv_bytes_per_batch):
                groups.append(cur)
                cur, w = [], n + extra
            cur.append(i)
            width = w
        if cur:
            groups.append(cur)
        return groups

    # ---- forward passes ----------------------------------------------------
    def _forward(self, ids: torch.Tensor, cache: Any, mask: torch.Tensor | None, pos: torch.Tensor,
                 keep: int | torch.Tensor) -> torch.Tensor:
        check_deadline()  # every forward pass (a prefill chunk, one decoding step) stops at a deadline_scope's end
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                         logits_to_keep=keep, **{self._cache_kw: cache})
        return out.logits

    def _empty_kv(self, batch: int, capacity: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        shape = (batch, self._kv_heads, capacity, self._head_dim)
        ks = [torch.zeros(shape, dtype=self.model.dtype, device=self.device) for _ in range(self._layers)]
        vs = [torch.zeros(shape, dtype=self.model.dtype, device=self.device) for _ in range(self._layers)]
        return ks, vs

    def prefix_kv(self, tokens: Tokens) -> KV:
        """The KV cache of ``tokens`` (batch 1), extending the longest stored prefix; stored for later."""
        arr = np.asarray(tokens, dtype=np.int64)
        entry, n = self.store.match(arr, len(tokens))
        if entry is not None and n == len(tokens):
            return [(k[:, :n], v[:, :n]) for k, v in entry.kv]
        rest = len(tokens) - n
        ks, vs = self._empty_kv(1, len(tokens))
        if entry is not None:
            for layer, (k, v) in enumerate(entry.kv):
                ks[layer][0, :, :n], vs[layer][0, :, :n] = k[:, :n], v[:, :n]
        self.store.reused_tokens += n
        cache = buffer_cache(ks, vs, n)
        ids = torch.tensor([tokens[n:]], device=self.device)
        pos = torch.arange(n, len(tokens), device=self.device)[None]
        self._forward(ids, cache, torch.ones((1, len(tokens)), dtype=torch.long, device=self.device), pos, 1)
        self.computed_tokens += rest
        kv = [(k[0], v[0]) for k, v in zip(ks, vs, strict=True)]
        self.store.add(tuple(tokens), kv)
        return kv

    def prefill(self, prompts: Sequence[Tokens], extra: int = 0) -> _Batch:
        """Run every prompt, reusing stored and shared prefixes; one left-padded cache with room for ``extra``.

        Each row's own suffix is run in chunks of rows with similar suffix lengths
        (padding bounded by ``PAD_SLACK``), then copied into the batch cache, where
        row ``r`` holds its whole prompt right-aligned: ``[pad][prompt]``.
        """
        arrays = [np.asarray(p, dtype=np.int64) for p in prompts]
        bases: list[tuple[KV | None, int]] = []
        for a in arrays:
            e, n = self.store.match(a, len(a) - 1)
            bases.append((e.kv if e is not None else None, n))
        for prefix, members in shared_prefixes(prompts, self.min_shared):
            if len(prefix) > max(bases[i][1] for i in members):
                kv = self.prefix_kv(prefix)
                for i in members:
                    if len(prefix) > bases[i][1]:
                        bases[i] = (kv, len(prefix))
        b = len(prompts)
        width = max(len(p) for p in prompts)
        ks, vs = self._empty_kv(b, width + extra)
        mask = torch.zeros((b, width), dtype=torch.long, device=self.device)
        logits: list[torch.Tensor | None] = [None] * b
        for chunk in self._suffix_chunks([len(p) - n for p, (_, n) in zip(prompts, bases, strict=True)]):
            rows = self._run_suffixes([prompts[r] for r in chunk], [bases[r] for r in chunk])
            for r, (kv_row, lg) in zip(chunk, rows, strict=True):
                lo = width - len(prompts[r])
                for layer, (k, v) in enumerate(kv_row):
                    ks[layer][r, :, lo:width], vs[layer][r, :, lo:width] = k, v
                mask[r, lo:] = 1
                logits[r] = lg
                self.store.add(tuple(prompts[r]), kv_row, copy=True)
        next_pos = torch.tensor([len(p) for p in prompts], device=self.device)
        return _Batch(buffer_cache(ks, vs, width), mask, next_pos, torch.stack(logits))  # type: ignore[arg-type]

    def _suffix_chunks(self, lengths: Sequence[int]) -> list[list[int]]:
        """Rows grouped by similar suffix length: padded tokens <= PAD_SLACK x real, and the forward budget."""
        order = sorted(range(len(lengths)), key=lambda r: -lengths[r])
        chunks: list[list[int]] = []
        for r in order:
            cur = chunks[-1] if chunks else None
            if cur is not None:
                n = len(cur) + 1
                longest = lengths[cur[0]]
                real = sum(lengths[x] for x in cur) + lengths[r]
                if n * longest <= PAD_SLACK * real and n * longest <= self.tokens_per_forward:
                    cur.append(r)
                    continue
            chunks.append([r])
        return chunks

    def _run_suffixes(self, prompts: Sequence[Tokens], bases: Sequence[tuple[KV | None, int]]
                      ) -> list[tuple[KV, torch.Tensor]]:
        """One forward over the rows' suffixes after their prefixes: each row's prompt KV and next-token logits."""
        b = len(prompts)
        pmax = max(n for _, n in bases)
        suffixes = [p[n:] for p, (_, n) in zip(prompts, bases, strict=True)]
        s = max(len(x) for x in suffixes)
        ks, vs = self._empty_kv(b, pmax + s)
        mask = torch.zeros((b, pmax + s), dtype=torch.long)
        ids = torch.full((b, s), self.pad_id, dtype=torch.long)
        pos = torch.zeros((b, s), dtype=torch.long)
        for r, ((kv, n), suf) in enumerate(zip(bases, suffixes, strict=True)):
            if kv is not None and n:
                for layer, (k, v) in enumerate(kv):
                    ks[layer][r, :, pmax - n:pmax], vs[layer][r, :, pmax - n:pmax] = k[:, :n], v[:, :n]
            self.store.reused_tokens += n
            mask[r, pmax - n:pmax + len(suf)] = 1
            ids[r, :len(suf)] = torch.tensor(suf, dtype=torch.long)
            pos[r] = n + torch.arange(s)
        last = torch.tensor([len(x) - 1 for x in suffixes])
        keep = torch.unique(last)
        logits = self._forward(ids.to(self.device), buffer_cache(ks, vs, pmax), mask.to(self.device),
                               pos.to(self.device), keep.to(self.device))
        self.computed_tokens += sum(len(x) for x in suffixes)
        picked = logits[torch.arange(b), torch.searchsorted(keep, last).to(logits.device)]
        out = []
        for r, ((_, n), suf) in enumerate(zip(bases, suffixes, strict=True)):
            span = slice(pmax - n, pmax + len(suf))
            out.append(([(k[r, :, span], v[r, :, span]) for k, v in zip(ks, vs, strict=True)], picked[r]))
        return out

    # ---- choice scoring ------------------------------------------------------
    def choice_logprobs(self, prompts: Sequence[Tokens], singles: Sequence[int],
                        multis: Sequence[Sequence[int]]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Log-probs of single-token answers (B, len(singles)) and of each multi-token answer (B,) per answer."""
        extra = max((len(m) - 1 for m in multis), default=0)
        batch = self.prefill(prompts, extra)
        first = batch.logits.float().log_softmax(-1)
        single_lp = first[:, list(singles)].cpu() if singles else torch.zeros((len(prompts), 0))
        multi_lp = []
        for seq in multis:  # the same continuation for every row
            k = len(seq) - 1
            cont = torch.tensor([list(seq[:-1])] * len(prompts), device=self.device)
            mask = torch.cat([batch.mask, torch.ones_like(cont)], 1)
            pos = batch.next_pos[:, None] + torch.arange(k, device=self.device)
            lp = self._forward(cont, batch.cache, mask, pos, 0).float().log_softmax(-1)
            total = first[:, seq[0]] + sum(lp[:, j, t] for j, t in enumerate(seq[1:]))
            multi_lp.append(total.cpu())
            batch.cache.crop(-k)
        return single_lp, multi_lp

    # ---- generation ------------------------------------------------------------
    def generate(self, prompts: Sequence[Tokens], sampling: Sampling,
                 is_stopped: Callable[[list[int]], bool]) -> list[Generated]:
        """Decode every prompt in one ragged batch; ``is_stopped(tokens)`` checks stop strings."""
        b = len(prompts)
        out = [Generated() for _ in range(b)]
        batch = self.prefill(prompts, max(sampling.max_new))
        gens = None
        if sampling.temperature > 0:
            gens = [torch.Generator(device=self.device).manual_seed(int(s)) for s in (sampling.seeds or [0] * b)]
        active = list(range(b))
        logits, mask, pos = batch.logits, batch.mask, batch.next_pos
        while active:
            toks = self._pick(logits, [gens[i] for i in active] if gens else None, sampling)
            keep = []
            for r, (i, t) in enumerate(zip(active, toks, strict=True)):
                out[i].tokens.append(t)
                if t in sampling.eos or (sampling.stop and is_stopped(out[i].tokens)):
                    out[i].stopped = True
                elif len(out[i].tokens) < sampling.max_new[i]:
                    keep.append(r)
            if not keep:
                break
            if len(keep) < len(active):
                idx = torch.tensor(keep, device=self.device)
                batch.cache.batch_select_indices(idx)
                mask, pos = mask[idx], pos[idx]
                toks = [toks[r] for r in keep]
                active = [active[r] for r in keep]
            ids = torch.tensor(toks, device=self.device)[:, None]
            mask = torch.cat([mask, torch.ones((len(active), 1), dtype=mask.dtype, device=self.device)], 1)
            logits = self._forward(ids, batch.cache, mask, pos[:, None], 1)[:, -1]
            pos = pos + 1
        return out

    def _pick(self, logits: torch.Tensor, gens: list[torch.Generator] | None, sampling: Sampling) -> list[int]:
        if gens is None:
            return logits.argmax(-1).tolist()
        scaled = logits.float() / sampling.temperature
        if sampling.top_p < 1.0:
            sorted_logits, order = scaled.sort(-1, descending=True)
            probs = sorted_logits.softmax(-1)
            drop = probs.cumsum(-1) - probs > sampling.top_p
            sorted_logits[drop] = float("-inf")
            scaled = torch.full_like(scaled, float("-inf")).scatter(-1, order, sorted_logits)
        probs = scaled.softmax(-1)
        return [int(torch.multinomial(probs[r], 1, generator=g)) for r, g in enumerate(gens)]
