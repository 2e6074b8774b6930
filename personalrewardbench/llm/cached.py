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
``usage``. Identical requests inside one call are computed once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from personalrewardbench.data.schema import Message
from personalrewardbench.llm.base import LLM, Chat, Completion, GenerationParams, LLMError, Usage
from personalrewardbench.llm.cache import RequestCache, request_key
from personalrewardbench.llm.truncate import fit_chat


@dataclass(frozen=True)
class ChoiceScore:
    """What a backend returns for one choice-scoring request.

    ``logprobs`` maps every choice to log P(choice is the next answer); an empty
    dict (with ``failed=True``) marks a request that could not be scored.
    """

    logprobs: dict[str, float]
    prompt_tokens: int
    failed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


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
        self._compute_lock = threading.Lock()

    # ---- backend hooks -------------------------------------------------
    def render(self, chat: Chat) -> str:
        """The prompt as the model sees it (cache key part). Default: the messages as JSON."""
        return json.dumps([[m.role, m.content] for m in chat], ensure_ascii=False)

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
        budget = max(self.context_length - params.max_tokens, self.context_length // 2)

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
            return dataclasses.replace(c, prompt_truncated=truncated)

        return self._run("generate", chats, key_params, (), budget, compute, from_cache, finish,
                         lambda c: c.finish_reason == "error",
                         lambda c: (c.prompt_tokens, c.completion_tokens))

    def choice_logprobs(self, chats: Sequence[Chat], choices: Sequence[str]) -> list[dict[str, float]]:
        choices = check_choices(choices)
        key_params = {"context_length": self.context_length}
        budget = max(self.context_length - self.choice_reserve_tokens, self.context_length // 2)

        def compute(batch: list[tuple[Message, ...]]) -> list[tuple[Any, dict]]:
            outs = self._choice_logprobs(batch, choices)
            if len(outs) != len(batch):
                raise RuntimeError(f"{self.backend_name} backend returned {len(outs)} scores for {len(batch)}")
            return [(s, {"logprobs": s.logprobs, "prompt_tokens": s.prompt_tokens, "extra": s.extra}) for s in outs]

        def from_cache(v: dict, truncated: bool) -> dict[str, float]:
            return {c: float(v["logprobs"][c]) for c in choices}

        def finish(s: ChoiceScore, truncated: bool) -> dict[str, float]:
            return {} if s.failed else {c: float(s.logprobs[c]) for c in choices}

        return self._run("choice", chats, key_params, choices, budget, compute, from_cache, finish,
                         lambda s: s.failed, lambda s: (s.prompt_tokens, 0))

    # ---- the shared loop -----------------------------------------------
    def _run(self, kind: str, chats: Sequence[Chat], key_params: dict, choices: Sequence[str], budget: int,
             compute: Callable, from_cache: Callable, finish: Callable, failed: Callable,
             tokens: Callable) -> list:
        start = time.perf_counter()
        norm = [as_chat(c) for c in chats]
        rendered = [self.render(c) for c in norm]
        keys = [request_key(self.identity, kind, key_params, r, choices) for r in rendered]
        stored = self._cache.get_many(keys) if self._cache is not None else {}
        results: list[Any] = [None] * len(norm)
        hit_tokens = [0, 0]
        n_hits = 0
        n_trunc_hits = 0
        todo: dict[str, list[int]] = {}
        for i, k in enumerate(keys):
            if k in stored:
                v = stored[k]
                results[i] = from_cache(v["value"], v["truncated"])
                hit_tokens[0] += v["value"].get("prompt_tokens", 0)
                hit_tokens[1] += v["value"].get("completion_tokens", 0)
                n_hits += 1
                n_trunc_hits += int(bool(v["truncated"]))
            else:
                todo.setdefault(k, []).append(i)
        self._account(calls=n_hits, cache_hits=n_hits, prompt_tokens=hit_tokens[0],
                      completion_tokens=hit_tokens[1], truncated=n_trunc_hits)
        order = sorted(todo, key=lambda k: -len(rendered[todo[k][0]]))  # longest first: even batches
        bar = tqdm(total=len(order), desc=f"{self.backend_name} {kind}", unit="req", leave=False,
                   disable=not self.progress or len(order) <= self.batch_size)
        try:
            for b in range(0, len(order), self.batch_size):
                batch_keys = order[b:b + self.batch_size]
                fitted = [fit_chat(norm[todo[k][0]], self.count_tokens, budget) for k in batch_keys]
                bar.set_postfix_str(f"batch {b // self.batch_size + 1}/{-(-len(order) // self.batch_size)} "
                                    f"({len(batch_keys)} req) running", refresh=True)  # no 0% that looks stuck
                with self._compute_lock:
                    outs = compute([f[0] for f in fitted])
                to_store = []
                n_fail = n_trunc = ptok = ctok = 0
                for k, (_, truncated), (out, value) in zip(batch_keys, fitted, outs, strict=True):
                    res = finish(out, truncated)
                    for i in todo[k]:
                        results[i] = res
                    p, c = tokens(out)
                    ptok, ctok = ptok + p * len(todo[k]), ctok + c * len(todo[k])
                    n_trunc += truncated * len(todo[k])
                    if failed(out):
                        n_fail += len(todo[k])
                    else:
                        to_store.append((k, kind, self.identity, {"value": value, "truncated": truncated}))
                if self._cache is not None:
                    self._cache.put_many(to_store)
                n = sum(len(todo[k]) for k in batch_keys)
                self._account(calls=n, prompt_tokens=ptok, completion_tokens=ctok, truncated=n_trunc,
                              failed=n_fail, computed=(ptok, ctok))
                bar.update(len(batch_keys))
        finally:
            bar.close()
            with self._usage_lock:
                self.usage.seconds += time.perf_counter() - start
        return results

    def _account(self, *, calls: int = 0, cache_hits: int = 0, prompt_tokens: int = 0, completion_tokens: int = 0,
                 truncated: int = 0, failed: int = 0, computed: tuple[int, int] = (0, 0)) -> None:
        with self._usage_lock:
            u = self.usage
            u.calls += calls
            u.cache_hits += cache_hits
            u.prompt_tokens += prompt_tokens
            u.completion_tokens += completion_tokens
            u.truncated_prompts += truncated
            u.failed_requests += failed
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
