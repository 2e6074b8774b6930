"""An LLM whose answers come from Python functions.

For unit tests of methods and for measuring harness overhead with "a model
that answers instantly". It is a real :class:`~personalrewardbench.llm.base.LLM`
that goes through the same cache, context fitting, batching and accounting as
the model backends. Tokens are whitespace-separated words.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

from personalrewardbench.llm.base import Chat, Completion, GenerationParams
from personalrewardbench.llm.cached import CachedLLM, ChoiceScore

GenerateFn = Callable[[Chat, GenerationParams], str]
ChoiceFn = Callable[[Chat, Sequence[str]], dict[str, float]]


def _words(text: str) -> int:
    return len(text.split())


class ScriptedLLM(CachedLLM):
    """``generate_fn(chat, params) -> str``; ``choice_fn(chat, choices) -> {choice: logprob}``.

    Without ``generate_fn`` every completion is the empty string; without
    ``choice_fn`` every choice gets the same probability. A function that
    raises makes that one request a counted failure (an empty completion with
    ``finish_reason="error"``, or ``{}`` from ``choice_logprobs``).
    Caching is off unless ``use_cache=True`` is passed.
    """

    backend_name = "scripted"
    default_batch_size = 64

    def __init__(self, generate_fn: GenerateFn | None = None, choice_fn: ChoiceFn | None = None,
                 identity: str = "scripted", context_length: int = 8192, *, cache_dir: str | None = None,
                 use_cache: bool = False, batch_size: int | None = None) -> None:
        super().__init__(cache_dir=cache_dir, use_cache=use_cache, batch_size=batch_size, progress=False)
        self.generate_fn = generate_fn
        self.choice_fn = choice_fn
        self._identity = f"scripted:{identity}"
        self._context_length = int(context_length)

    @property
    def identity(self) -> str:
        return self._identity

    @property
    def context_length(self) -> int:
        return self._context_length

    def count_tokens(self, chat: Chat) -> int:
        return sum(_words(m.content) for m in chat)

    def _generate(self, chats: Sequence[Chat], params: GenerationParams) -> list[Completion]:
        out = []
        for chat in chats:
            t0 = time.perf_counter()
            try:
                text = self.generate_fn(chat, params) if self.generate_fn else ""
                reason = "stop"
            except Exception:  # noqa: BLE001 - a scripted failure is a counted failed request
                text, reason = "", "error"
            words = text.split()
            if len(words) > params.max_tokens:
                text, reason = " ".join(words[:params.max_tokens]), "length"
            out.append(Completion(text=text, prompt_tokens=self.count_tokens(chat),
                                  completion_tokens=min(len(words), params.max_tokens),
                                  latency_s=time.perf_counter() - t0, finish_reason=reason))
        return out

    def _choice_logprobs(self, chats: Sequence[Chat], choices: Sequence[str]) -> list[ChoiceScore]:
        out = []
        for chat in chats:
            tokens = self.count_tokens(chat)
            if self.choice_fn is None:
                out.append(ChoiceScore({c: -math.log(len(choices)) for c in choices}, tokens))
                continue
            try:
                got = self.choice_fn(chat, choices)
                scores = {c: float(got[c]) for c in choices}
            except Exception:  # noqa: BLE001
                out.append(ChoiceScore({}, tokens, failed=True))
                continue
            out.append(ChoiceScore(scores, tokens))
        return out
