"""The shared base of every backend: request cache, context fitting, batching, accounting.

A backend subclasses :class:`CachedLLM` and implements

- ``identity``, ``context_length``, ``count_tokens(chat)``;
- ``_generate(chats, params) -> list[Completion]`` and
  ``_choice_logprobs(chats, choices) -> list[ChoiceScore]``, called only for
  requests the cache does not hold, with chats already fitted to the context,
  at most ``batch_size`` at a time, longest prompts first;
- optionally ``render(chat)``: the exact prompt text (chat template applied)
  that goes into the cache key.

The public ``generate``/``choice_logprobs`` look every request up in the cache,
send the misses to the backend in batches, commit each finished batch to the
cache at once (so an interrupted run resumes where it stopped), and update
``usage``. Identical requests inside one call are computed once; the copies
are answered by the first (``cached=True``, counted as cache hits: like the
reference's cached identical requests, they never reach the model).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import threading
import time
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from personalrewardbench.data.schema import Message
from personalrewardbench.llm.base import LLM, Chat, Completion, GenerationParams, LLMError, Usage, check_deadline
from personalrewardbench.llm.cache import RequestCache, request_key
from personalrewardbench.llm.truncate import fit_chat


@dataclass(frozen=True)
class ChoiceScore:
    """What a backend returns for one choice-scoring request.

    ``logprobs`` maps every choice to log P(choice is the next answer); an empty
    dict (with ``failed=True``) marks a request that could not be scored, and so
    does a dict that carries no information (every choice ``-inf``, or a NaN).
    ``fallback``: the scores come from a greedy answer, not log-probabilities
    (counted, never cached as a choice score). ``unlisted``: some choice's
    log-probability is only an upper bound (it was outside the listed top tokens).
    ``truncated``: the backend cut the prompt further (after a context refusal).
    """

    logprobs: dict[str, float]
    prompt_tokens: int
    failed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    fallback: bool = False
    unlisted: bool = False
    truncated: bool = False


def no_information(logprobs: Mapping[str, float], choices: Sequence[str]) -> bool:
    """True when ``logprobs`` cannot tell the choices apart: a choice missing, a NaN, or all ``-inf``."""
    vals = [logprobs.get(c) for c in choices]
    if any(v is None or math.isnan(v) for v in vals):
        return True
    return all(v == -math.inf for v in vals)  # type: ignore[comparison-overlap]


def as_chat(chat: Any) -> tuple[Message, ...]:
    """Normalize a chat given as Messages or {"role","content"} mappings; a bare string is one user turn."""
    if isinstance(chat, str):
        return (Message("user", chat),)
    out = []
    for i, m in enumerate(chat):
        if isinstance(m, Message):
            out.append(m)
        elif isinstance(m, Mapping) and "role" in m and "content" in m:
            out.append(Message(str(m["role"]), str(m["content"])))
        else:
            raise ValueError(f"chat message {i} is {type(m).__name__}; expected a Message or a "
                             "{'role': ..., 'content': ...} mapping")
    if not out:
        raise ValueError("empty chat: a chat needs at least one message")
    return tuple(out)


def item_seed(seed: int, text: str) -> int:
    """A per-request seed from the run seed and the request itself (independent of batching)."""
    digest = hashlib.sha256(f"{seed}\x00{text}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def check_choices(choices: Sequence[str]) -> tuple[str, ...]:
    out = tuple(choices)
    if len(out) < 2 or any(not isinstance(c, str) or not c.strip() for c in out):
        raise ValueError(f"choices must be at least two non-empty strings, got {list(out)!r}")
    if len({c.strip() for c in out}) != len(out):
        raise ValueError(f"choices must be distinct, got {list(out)!r}")
    return out


class CachedLLM(LLM):
    """Cache + accounting + batching around a backend's ``_generate``/``_choice_logprobs``."""

    backend_name = "base"
    default_batch_size = 8
    choice_reserve_tokens = 16  # room left after the prompt for the scored answer

    def __init__(self, *, cache_dir: str | None = None, use_cache: bool = True, batch_size: int | None = None,
                 progress: bool = True) -> None:
        self.usage = Usage()
        self.batch_size = max(1, int(batch_size or self.default_batch_size))
        self.progress = progress
        self._cache: RequestCache | None = RequestCache(cache_dir) if use_cache else None
        self._usage_lock = threading.Lock()
        self._compute_lock = threading.RLock()  # re-entrant: a backend may call generate from a hook
        self._depth = threading.local()
        self._fit_limit: int | None = None  # a smaller context limit learned from the server (tokens)

    # ---- backend hooks -------------------------------------------------
    def render(self, chat: Chat) -> str:
        """The prompt as the model sees it (cache key part). Default: the messages as JSON."""
        return json.dumps([[m.role, m.content] for m in chat], ensure_ascii=False)

    def batch_order_key(self, rendered: str) -> Any:
        """Sort key of an uncached request (its rendered prompt) in the order requests are batched.

        Default: longest prompt first, so each batch holds prompts of similar length (less padding
        in a local engine). A server backend orders by the prompt text instead, so requests that
        share a prefix go out together (see the openai backend).
        """
        return -len(rendered)

    @abstractmethod
    def _generate(self, chats: Sequence[Chat], params: GenerationParams) -> list[Completion]: ...

    @abstractmethod
    def _choice_logprobs(self, chats: Sequence[Chat], choices: Sequence[str]) -> list[ChoiceScore]: ...

    # ---- public API ----------------------------------------------------
    @property
    def cache(self) -> RequestCache | None:
        return self._cache

    def generate(self, chats: Sequence[Chat], params: GenerationParams | None = None) -> list[Completion]:
        params = params or GenerationParams()
        if params.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {params.max_tokens}")
        key_params = {**params.key(), "context_length": self.context_length}

        def compute(batch: list[tuple[Message, ...]]) -> list[tuple[Any, dict]]:
            outs = self._generate(batch, params)
            if len(outs) != len(batch):
                raise RuntimeError(f"{self.backend_name} backend returned {len(outs)} completions for {len(batch)}")
            return [(c, {"text": c.text, "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
                         "latency_s": c.latency_s, "finish_reason": c.finish_reason}) for c in outs]

        def from_cache(v: dict, truncated: bool) -> Completion:
            return Completion(text=v["text"], prompt_tokens=v["prompt_tokens"],
                              completion_tokens=v["completion_tokens"], latency_s=v["latency_s"],
                              finish_reason=v["finish_reason"], cached=True, prompt_truncated=truncated)

        def finish(c: Completion, truncated: bool) -> Completion:
            return dataclasses.replace(c, prompt_truncated=truncated or c.prompt_truncated)

        def outcome(c: Completion) -> dict[str, Any]:
            return {"failed": c.finish_reason == "error", "truncated": c.prompt_truncated,
                    "tokens": (c.prompt_tokens, c.completion_tokens)}

        return self._run("generate", chats, key_params, (), params.max_tokens, compute, from_cache, finish, outcome)

    def choice_logprobs(self, chats: Sequence[Chat], choices: Sequence[str]) -> list[dict[str, float]]:
        choices = check_choices(choices)
        key_params = {"context_length": self.context_length}

        def compute(batch: list[tuple[Message, ...]]) -> list[tuple[Any, dict]]:
            outs = self._choice_logprobs(batch, choices)
            if len(outs) != len(batch):
                raise RuntimeError(f"{self.backend_name} backend returned {len(outs)} scores for {len(batch)}")
            return [(s, {"logprobs": s.logprobs, "prompt_tokens": s.prompt_tokens, "extra": s.extra}) for s in outs]

        def from_cache(v: dict, truncated: bool) -> dict[str, float]:
            return {c: float(v["logprobs"][c]) for c in choices}

        def failed(s: ChoiceScore) -> bool:
            return s.failed or no_information(s.logprobs, choices)

        def finish(s: ChoiceScore, truncated: bool) -> dict[str, float]:
            return {} if failed(s) else {c: float(s.logprobs[c]) for c in choices}

        def outcome(s: ChoiceScore) -> dict[str, Any]:
            bad = failed(s)
            return {"failed": bad, "truncated": s.truncated, "tokens": (s.prompt_tokens, 0),
                    "fallback": s.fallback and not bad, "unlisted": s.unlisted and not bad,
                    "store": not (bad or s.fallback)}

        return self._run("choice", chats, key_params, choices, self.choice_reserve_tokens, compute, from_cache,
                         finish, outcome)

    # ---- the shared loop -----------------------------------------------
    def fit_budget(self, reserve: int) -> int:
        """Prompt tokens allowed when ``reserve`` tokens must stay free for the answer.

        The context is ``context_length``, or a smaller limit the server stated in a refusal
        (``_fit_limit``); at least half of it always goes to the prompt.
        """
        limit = min(self.context_length, self._fit_limit or self.context_length)
        return max(limit - reserve, limit // 2)

    def _run(self, kind: str, chats: Sequence[Chat], key_params: dict, choices: Sequence[str], reserve: int,
             compute: Callable, from_cache: Callable, finish: Callable, outcome: Callable) -> list:
        start = time.perf_counter()
        depth = getattr(self._depth, "n", 0)
        self._depth.n = depth + 1
        try:
            return self._run_batches(kind, chats, key_params, choices, reserve, compute, from_cache, finish,
                                     outcome)
        finally:
            self._depth.n = depth
            if depth == 0:  # a nested call (a backend's fallback) is inside the outer call's time
                with self._usage_lock:
                    self.usage.seconds += time.perf_counter() - start

    def _run_batches(self, kind: str, chats: Sequence[Chat], key_params: dict, choices: Sequence[str],
                     reserve: int, compute: Callable, from_cache: Callable, finish: Callable,
                     outcome: Callable) -> list:
        norm = [as_chat(c) for c in chats]
        rendered = [self.render(c) for c in norm]
        keys = [request_key(self.identity, kind, key_params, r, choices) for r in rendered]
        stored = self._cache.get_many(keys) if self._cache is not None else {}
        results: list[Any] = [None] * len(norm)
        hits = {"calls": 0, "cache_hits": 0, "prompt_tokens": 0, "completion_tokens": 0, "truncated_prompts": 0}
        todo: dict[str, list[int]] = {}
        for i, k in enumerate(keys):
            if k in stored:
                v = stored[k]
                results[i] = from_cache(v["value"], v["truncated"])
                hits["prompt_tokens"] += v["value"].get("prompt_tokens", 0)
                hits["completion_tokens"] += v["value"].get("completion_tokens", 0)
                hits["calls"] += 1
                hits["cache_hits"] += 1
                hits["truncated_prompts"] += int(bool(v["truncated"]))
            else:
                todo.setdefault(k, []).append(i)
        self._account(kind, hits)
        order = sorted(todo, key=lambda k: self.batch_order_key(rendered[todo[k][0]]))
        bar = tqdm(total=len(order), desc=f"{self.backend_name} {kind}", unit="req", leave=False,
                   disable=not self.progress or len(order) <= self.batch_size)
        try:
            for b in range(0, len(order), self.batch_size):
                check_deadline()
                batch_keys = order[b:b + self.batch_size]
                budget = self.fit_budget(reserve)
                fitted = [fit_chat(norm[todo[k][0]], self.count_tokens, budget) for k in batch_keys]
                bar.set_postfix_str(f"batch {b // self.batch_size + 1}/{-(-len(order) // self.batch_size)} "
                                    f"({len(batch_keys)} req) running", refresh=True)  # no 0% that looks stuck
                with self._compute_lock:
                    outs = compute([f[0] for f in fitted])
                to_store = []
                counts = dict.fromkeys(("calls", "cache_hits", "prompt_tokens", "completion_tokens",
                                        "truncated_prompts", "failed_requests", "choice_fallbacks",
                                        "unlisted_choices"), 0)
                computed = [0, 0]
                for k, (_, cut), (out, value) in zip(batch_keys, fitted, outs, strict=True):
                    o = outcome(out)
                    truncated = cut or o["truncated"]
                    res = finish(out, truncated)
                    n = len(todo[k])
                    results[todo[k][0]] = res
                    for i in todo[k][1:]:  # the same request again in this call: answered by the first
                        results[i] = dataclasses.replace(res, cached=True) if isinstance(res, Completion) else res
                    counts["cache_hits"] += n - 1
                    p, c = o["tokens"]
                    computed[0], computed[1] = computed[0] + p, computed[1] + c
                    counts["calls"] += n
                    counts["prompt_tokens"] += p * n
                    counts["completion_tokens"] += c * n
                    counts["truncated_prompts"] += truncated * n
                    counts["failed_requests"] += o["failed"] * n
                    counts["choice_fallbacks"] += o.get("fallback", False) * n
                    counts["unlisted_choices"] += o.get("unlisted", False) * n
                    if not o["failed"] and o.get("store", True):
                        to_store.append((k, kind, self.identity, {"value": value, "truncated": truncated}))
                if self._cache is not None:
                    self._cache.put_many(to_store)
                self._account(kind, counts, computed=(computed[0], computed[1]))
                bar.update(len(batch_keys))
        finally:
            bar.close()
        return results

    def _account(self, kind: str, counts: Mapping[str, int], computed: tuple[int, int] = (0, 0)) -> None:
        """Add ``counts`` to ``usage`` under ``kind`` (thread-safe); ``computed``: tokens actually computed."""
        with self._usage_lock:
            self.usage.add(kind, **counts)
            u = self.usage
            u.extra["computed_prompt_tokens"] = u.extra.get("computed_prompt_tokens", 0) + computed[0]
            u.extra["computed_completion_tokens"] = u.extra.get("computed_completion_tokens", 0) + computed[1]

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()

    def __enter__(self) -> CachedLLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def require(condition: bool, message: str) -> None:
    """Raise :class:`LLMError` with ``message`` unless ``condition``."""
    if not condition:
        raise LLMError(message)
