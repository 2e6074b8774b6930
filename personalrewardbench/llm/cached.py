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

A cache entry is ``{"value", "truncated", "flags", "other_model"}``: ``flags`` names the
:data:`~personalrewardbench.llm.base.ANSWER_COUNTERS` that described the answer when it was computed
(from the backend's ``Completion``/``ChoiceScore`` fields), and each replay counts them again, so a
rerun from the cache reports the degradation the first run did. Failed requests and choice fallbacks
are not stored (a rerun asks again and counts them again).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
import threading
import time
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from personalrewardbench.data.schema import Message
from personalrewardbench.llm.base import (
    ANSWER_COUNTERS,
    LLM,
    Chat,
    Completion,
    GenerationParams,
    LLMError,
    Usage,
    check_deadline,
)
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
    ``truncated``: the backend cut the prompt further (after a context refusal). ``other_model``: the
    model the server said answered, when not the one asked (``usage.model_mismatches``).
    """

    logprobs: dict[str, float]
    prompt_tokens: int
    failed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    fallback: bool = False
    unlisted: bool = False
    truncated: bool = False
    other_model: str | None = None


#: How many distinct other-model names ``usage.extra["other_models"]`` keeps (the rest are summed under
#: ``"(other names)"``): the names come from a server's answers, so their number is bounded.
MAX_OTHER_MODELS = 8


def stored_flags(entry: Mapping[str, Any]) -> tuple[set[str], str | None]:
    """The :data:`~personalrewardbench.llm.base.ANSWER_COUNTERS` a cache entry was stored with, and the
    other model that answered it (None: the one asked). Entries written before the flags were stored
    carry only ``truncated``; junk in the fields is ignored."""
    raw = entry.get("flags")
    flags = {f for f in raw if isinstance(f, str) and f in ANSWER_COUNTERS} if isinstance(raw, list) else set()
    if entry.get("truncated"):
        flags.add("truncated_prompts")
    other = entry.get("other_model")
    other = other if isinstance(other, str) and other else None
    if other is not None:
        flags.add("model_mismatches")
    return flags, other


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

        def from_cache(v: dict, flags: set[str], other: str | None) -> Completion:
            return Completion(text=v["text"], prompt_tokens=v["prompt_tokens"],
                              completion_tokens=v["completion_tokens"], latency_s=v["latency_s"],
                              finish_reason=v["finish_reason"], cached=True,
                              prompt_truncated="truncated_prompts" in flags,
                              reply_clamped="clamped_max_tokens" in flags, other_model=other)

        def finish(c: Completion, truncated: bool) -> Completion:
            return dataclasses.replace(c, prompt_truncated=truncated or c.prompt_truncated)

        def outcome(c: Completion) -> dict[str, Any]:
            return {"failed": c.finish_reason == "error", "truncated": c.prompt_truncated,
                    "tokens": (c.prompt_tokens, c.completion_tokens), "clamped": c.reply_clamped,
                    "other_model": c.other_model}

        return self._run("generate", chats, key_params, (), params.max_tokens, compute, from_cache, finish, outcome)

    def choice_logprobs(self, chats: Sequence[Chat], choices: Sequence[str]) -> list[dict[str, float]]:
        choices = check_choices(choices)
        key_params = {"context_length": self.context_length}

        def compute(batch: list[tuple[Message, ...]]) -> list[tuple[Any, dict]]:
            outs = self._choice_logprobs(batch, choices)
            if len(outs) != len(batch):
                raise RuntimeError(f"{self.backend_name} backend returned {len(outs)} scores for {len(batch)}")
            return [(s, {"logprobs": s.logprobs, "prompt_tokens": s.prompt_tokens, "extra": s.extra}) for s in outs]

        def from_cache(v: dict, flags: set[str], other: str | None) -> dict[str, float]:
            return {c: float(v["logprobs"][c]) for c in choices}

        def failed(s: ChoiceScore) -> bool:
            return s.failed or no_information(s.logprobs, choices)

        def finish(s: ChoiceScore, truncated: bool) -> dict[str, float]:
            return {} if failed(s) else {c: float(s.logprobs[c]) for c in choices}

        def outcome(s: ChoiceScore) -> dict[str, Any]:
            bad = failed(s)
            return {"failed": bad, "truncated": s.truncated, "tokens": (s.prompt_tokens, 0),
                    "fallback": s.fallback and not bad, "unlisted": s.unlisted and not bad,
                    "store": not (bad or s.fallback), "other_model": s.other_model}

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
        hits = dict.fromkeys(("calls", "cache_hits", "prompt_tokens", "completion_tokens", *ANSWER_COUNTERS), 0)
        others: dict[str, int] = {}
        todo: dict[str, list[int]] = {}
        for i, k in enumerate(keys):
            if k in stored:
                v = stored[k]
                flags, other = stored_flags(v)
                results[i] = from_cache(v["value"], flags, other)
                hits["prompt_tokens"] += v["value"].get("prompt_tokens", 0)
                hits["completion_tokens"] += v["value"].get("completion_tokens", 0)
                hits["calls"] += 1
                hits["cache_hits"] += 1
                for name in flags:  # the answer is as degraded as when it was computed
                    hits[name] += 1
                if other is not None:
                    others[other] = others.get(other, 0) + 1
            else:
                todo.setdefault(k, []).append(i)
        self._account(kind, hits)
        self._note_other_models(others)
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
                                        "failed_requests", "choice_fallbacks", *ANSWER_COUNTERS), 0)
                others = {}
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
                    counts["failed_requests"] += o["failed"] * n
                    counts["choice_fallbacks"] += o.get("fallback", False) * n
                    other = o.get("other_model") or None
                    flags = {"truncated_prompts": truncated, "unlisted_choices": o.get("unlisted", False),
                             "clamped_max_tokens": o.get("clamped", False), "model_mismatches": other is not None}
                    for name, on in flags.items():
                        counts[name] += bool(on) * n
                    if other is not None:
                        others[other] = others.get(other, 0) + n
                    if not o["failed"] and o.get("store", True):
                        entry = {"value": value, "truncated": truncated,
                                 "flags": sorted(name for name, on in flags.items() if on)}
                        to_store.append((k, kind, self.identity, {**entry, **({"other_model": other} if other else {})}))
                if self._cache is not None:
                    self._cache.put_many(to_store)
                self._account(kind, counts, computed=(computed[0], computed[1]))
                self._note_other_models(others)
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

    def _note_other_models(self, others: Mapping[str, int]) -> None:
        """Tally answers that named another model (``{name: answers}``) in ``usage.extra["other_models"]``
        and warn once per name for this LLM object, naming the model asked and the one that answered."""
        if not others:
            return
        asked = getattr(self, "model", None) or self.identity
        with self._usage_lock:
            tally = self.usage.extra.setdefault("other_models", {})
            new = []
            for name, n in others.items():
                key = name if name in tally or len(tally) < MAX_OTHER_MODELS else "(other names)"
                new += [name] if key not in tally else []
                tally[key] = tally.get(key, 0) + n
        for name in new:
            print(f"prb: warning: the server's answers name the model {name!r}, not {asked!r} that was asked for; "
                  "they are kept and counted in model_mismatches (llama.cpp and some proxies echo another name; "
                  "otherwise check --base-url and --model)", file=sys.stderr)

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
