"""The one LLM interface every LLM-based method goes through.

A backend implements ``_generate`` and ``_choice_logprobs`` on uncached
requests; the public ``generate``/``choice_logprobs`` (implemented in the
backends' shared base, with the request cache and accounting) are what methods
call. Prompt builders (judge prompts) live with the methods, not here.
"""

from __future__ import annotations

import contextvars
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from personalrewardbench.data.schema import Message

Chat = Sequence[Message]


class LLMError(RuntimeError):
    """A user-fixable LLM problem (unknown model, missing file, server down).

    The message names the thing and the fix; the CLI prints it without a traceback.
    """


class DeadlineExceeded(TimeoutError):
    """The deadline of the enclosing :func:`deadline_scope` passed during an LLM request; what the request had
    computed is dropped (finished backend batches stay in the request cache)."""


_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("prb_llm_deadline", default=None)


@contextmanager
def deadline_scope(at: float | None) -> Iterator[None]:
    """Within this block, LLM requests (in this thread or task) stop at ``at`` (a ``time.monotonic()`` value)
    by raising :class:`DeadlineExceeded`: the backends check it before every batch, the transformers engine
    before every forward pass (one decoding step), the OpenAI-compatible backend caps each HTTP request's
    timeout at the time left. A nested scope can only bring the deadline closer. ``None``: no deadline."""
    outer = _DEADLINE.get()
    token = _DEADLINE.set(outer if at is None else at if outer is None else min(at, outer))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def time_left() -> float | None:
    """Seconds until the current :func:`deadline_scope`'s deadline (negative once passed); None outside one."""
    at = _DEADLINE.get()
    return None if at is None else at - time.monotonic()


def check_deadline() -> None:
    """Raise :class:`DeadlineExceeded` if the current :func:`deadline_scope`'s deadline has passed."""
    at = _DEADLINE.get()
    if at is not None and time.monotonic() >= at:
        raise DeadlineExceeded("the time limit passed during an LLM request")


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0

    def key(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    finish_reason: str = "stop"  # "stop" | "length" | "error"
    cached: bool = False
    prompt_truncated: bool = False  # the backend had to left-truncate the prompt to fit
    reply_clamped: bool = False  # the reply cap sent was below the asked ``max_tokens`` (the context left less)
    other_model: str | None = None  # the model the server said answered, when not the one asked (see Usage)


KINDS = ("choice", "generate")
#: Counters kept per request kind in ``Usage.by_kind`` (and as totals on ``Usage``).
KIND_COUNTERS = ("calls", "cache_hits", "prompt_tokens", "completion_tokens", "truncated_prompts",
                 "failed_requests", "refused_requests", "choice_fallbacks", "unlisted_choices", "retries",
                 "clamped_max_tokens", "model_mismatches")
#: The counters that describe an answer itself (not the exchange that got it): stored with the answer's
#: cache entry and counted again each time the entry answers a request, so a rerun from the cache reports
#: the degradation the first run did. Failures and choice fallbacks are never cached; refusals and
#: retries describe one run's traffic, not the answer.
ANSWER_COUNTERS = ("truncated_prompts", "unlisted_choices", "clamped_max_tokens", "model_mismatches")
#: The counters that mark degraded answers (what a run's summary warns about).
DEGRADED_COUNTERS = ("choice_fallbacks", "failed_requests", "refused_requests", "truncated_prompts",
                     "unlisted_choices", "model_mismatches")


def _kind_table() -> dict[str, dict[str, int]]:
    return {k: dict.fromkeys(KIND_COUNTERS, 0) for k in KINDS}


@dataclass
class Usage:
    """Running totals for one LLM object (what results report as cost and as degraded answers).

    Every count is of requests (one chat sent for one answer), cache hits included unless said:

    - ``calls``: requests answered; ``cache_hits``: of those, answered from the request cache.
    - ``prompt_tokens``/``completion_tokens``: tokens of those answers (``extra["computed_*"]``:
      only what was computed in this run); ``seconds``: wall time inside ``generate``/``choice_logprobs``.
    - ``truncated_prompts``: prompts cut to fit the context (before sending, or after a refusal).
    - ``failed_requests``: requests that got no answer (``finish_reason="error"``, or ``{}`` from
      ``choice_logprobs``); never cached.
    - ``refused_requests``: requests the server refused at least once (an HTTP 4xx such as a
      context-length refusal); one that succeeded on its retry is not also a failure.
    - ``choice_fallbacks``: choice requests answered from a greedy generation (log-probability 0
      for the choice it names, ``-inf`` for the others) because the server gave no usable
      log-probabilities; never cached as choice scores.
    - ``unlisted_choices``: choice requests where some choice was outside the server's top
      log-probabilities, so its log-probability is an upper bound (the lowest listed one).
    - ``retries``: extra attempts sent (transient HTTP errors, a refit after a context refusal).
    - ``clamped_max_tokens``: generations sent with a reply cap below the asked ``max_tokens``
      because the context (its length less the prompt's tokens) leaves less room; not a
      degradation: the reply may still fill the context.
    - ``model_mismatches``: answers whose ``model`` field names another model than the one asked (and
      than the server lists for it); kept, not failed (some servers and proxies echo another name),
      but counted and warned about; ``extra["other_models"]``: ``{name: answers}`` of those names.
    - The counters in :data:`ANSWER_COUNTERS` describe the answer and count cache hits too (a
      replayed answer is counted as it was when computed).
    - ``by_kind``: the same counters split by request kind, ``{"choice": {...}, "generate": {...}}``;
      a choice fallback's greedy generation is a ``generate`` request of its own.
    """

    calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    truncated_prompts: int = 0
    failed_requests: int = 0
    refused_requests: int = 0
    choice_fallbacks: int = 0
    unlisted_choices: int = 0
    retries: int = 0
    clamped_max_tokens: int = 0
    model_mismatches: int = 0
    by_kind: dict[str, dict[str, int]] = field(default_factory=_kind_table)
    extra: dict = field(default_factory=dict)

    def add(self, kind: str, **counts: int) -> None:
        """Add ``counts`` (names from :data:`KIND_COUNTERS`) to the totals and to ``by_kind[kind]``."""
        table = self.by_kind.setdefault(kind, dict.fromkeys(KIND_COUNTERS, 0))
        for name, n in counts.items():
            if n:
                setattr(self, name, getattr(self, name) + n)
                table[name] = table.get(name, 0) + n

    def counters(self) -> dict[str, float]:
        """Every numeric counter, flat: the totals plus ``<kind>_<counter>`` for each kind (JSON-ready)."""
        out: dict[str, float] = {name: getattr(self, name) for name in (*KIND_COUNTERS, "seconds")}
        for kind, table in self.by_kind.items():
            out.update({f"{kind}_{name}": n for name, n in table.items()})
        return out

    def as_dict(self) -> dict:
        """All fields as plain JSON-ready data (``by_kind`` and ``extra`` nested, the rest numbers)."""
        return asdict(self)


def degraded_note(counts: Mapping[str, Any]) -> str | None:
    """One line naming the degraded answers in ``counts`` (a :meth:`Usage.counters` or results mapping).

    None when there were none. Used by the commands' summaries so that a run that used a choice
    fallback, failed, refused or truncated requests says so.
    """
    words = {"choice_fallbacks": "choice fallbacks (greedy answers scored 0/1, not log-probabilities)",
             "failed_requests": "failed requests", "refused_requests": "refused by the server",
             "truncated_prompts": "truncated prompts",
             "unlisted_choices": "choices outside the top log-probabilities (upper bounds)",
             "model_mismatches": "answers naming another model than the one asked"}
    parts = [f"{int(counts[k])} {words[k]}" for k in DEGRADED_COUNTERS if (counts.get(k) or 0) > 0]
    return "LLM answers degraded: " + "; ".join(parts) if parts else None


def usage_counters(llm: Any) -> dict[str, float] | None:
    """``llm.usage.counters()`` when ``llm`` keeps a :class:`Usage`, else None."""
    usage = getattr(llm, "usage", None)
    return usage.counters() if isinstance(usage, Usage) else None


def degraded_since(llm: Any, before: Mapping[str, float] | None) -> str | None:
    """:func:`degraded_note` for what ``llm`` did since ``before`` (an earlier ``usage.counters()``)."""
    usage = getattr(llm, "usage", None)
    if not isinstance(usage, Usage):
        return None
    now = usage.counters()
    return degraded_note({k: v - (before or {}).get(k, 0) for k, v in now.items()})


class LLM(ABC):
    """Batched chat LLM.

    - ``identity``: backend + model + revision/file hash. Part of every cache key.
    - ``context_length``: the model's maximum tokens (prompt + generation).
    - ``count_tokens(chat)``: tokens of the rendered chat prompt (template applied).
    - ``generate(chats, params)``: one Completion per chat, in input order.
    - ``choice_logprobs(chats, choices)``: for each chat, {choice: log P(choice is
      the next answer)}; tokenizer variants (leading space, case) are handled
      by the backend. An empty dict marks a request that could not be scored
      (counted in ``usage.failed_requests``).
    - ``usage``: running :class:`Usage` totals.
    """

    usage: Usage

    @property
    @abstractmethod
    def identity(self) -> str: ...

    @property
    @abstractmethod
    def context_length(self) -> int: ...

    @abstractmethod
    def count_tokens(self, chat: Chat) -> int: ...

    @abstractmethod
    def generate(self, chats: Sequence[Chat], params: GenerationParams | None = None) -> list[Completion]: ...

    @abstractmethod
    def choice_logprobs(self, chats: Sequence[Chat], choices: Sequence[str]) -> list[dict[str, float]]: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release engines, servers, files."""
