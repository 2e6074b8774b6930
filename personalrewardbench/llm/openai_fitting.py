"""Fitting an OpenAI-compatible server's requests to what it holds: reply caps and context refusals.

:class:`ContextFitting` is the part of the openai backend that decides, per request, the reply
cap sent (``max_tokens``, at most what the context leaves after the prompt: :meth:`reply_room`,
marked on the answer, counted in ``usage.clamped_max_tokens``) and what to do with a context-length refusal
(:func:`~personalrewardbench.llm.openai_server.context_refusal`):

- a refusal of the reply cap whose prompt fits the budget the stated limit leaves for the asked
  cap (``max(limit - cap, limit // 2)``, the rule every prompt is fitted by) is sent once more with
  the cap lowered to what the limit leaves, the prompt untouched;
- any other context refusal is sent once more with the prompt fitted to the stated limit (scaled
  by the server's own count of the prompt when given; with no limit stated, to half the refused
  prompt), marked truncated; a second refusal fails the request.

A stated limit is kept for later requests unless the server already answered a longer prompt.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from personalrewardbench.llm.base import Chat
from personalrewardbench.llm.cached import as_chat
from personalrewardbench.llm.openai_answers import usage_count
from personalrewardbench.llm.openai_server import ContextRefusal
from personalrewardbench.llm.truncate import fit_chat


class ContextFitting:
    """Mixin of :class:`~personalrewardbench.llm.openai_backend.OpenAILLM`: reply caps and context refusals.

    Uses the backend's ``context_length``, ``count_tokens``, ``tokens`` (its source), ``_send``
    (one request per body, returning answers with ``body`` and ``refusal``), ``_account`` and
    the limits ``_fit_limit``, ``_answered_tokens``, ``_reply_limit`` it keeps.
    """

    context_length: int
    tokens: Any
    _fit_limit: int | None
    _answered_tokens: int
    _reply_limit: int | None
    count_tokens: Callable[[Chat], int]
    _send: Callable[..., list[Any]]
    _account: Callable[..., None]

    def _exchange(self, kind: str, chats: Sequence[Chat], body: Callable[..., dict],
                  reserve: int, cap: int | None = None) -> tuple[list[Any], list[bool], list[bool]]:
        """Send one request per chat; a context-length refusal is answered and sent once more.

        ``body(chat, prompt_tokens=None)`` builds a request (``prompt_tokens``: the server's count of
        the prompt, when a refusal gave it). A refusal of the reply cap (``cap``: the asked
        ``max_tokens``) whose prompt fits the budget the stated limit leaves for ``reserve`` is sent
        again with the cap lowered to what the limit leaves; any other context refusal is sent again
        with the prompt fitted to the stated limit. Returns each chat's final answer, whether its
        prompt was cut after a refusal, and whether its ``max_tokens`` went out below ``cap`` (the
        answer's ``reply_clamped``, counted in ``usage.clamped_max_tokens`` by the shared base).
        """
        bodies = [body(c) for c in chats]
        clamped = {i for i, b in enumerate(bodies) if cap is not None and b.get("max_tokens", cap) < cap}
        answers = self._send(kind, bodies)
        self._note_answered(chats, answers)
        refit = [False] * len(chats)
        again = [i for i, a in enumerate(answers) if a.refusal is not None]
        if again:
            resend: dict[int, tuple[Chat, dict]] = {}
            for i in again:
                refusal: ContextRefusal = answers[i].refusal  # type: ignore[assignment]
                if cap is not None and refusal.reply_cap and self._cap_only(chats[i], refusal, reserve):
                    b = body(chats[i], prompt_tokens=refusal.prompt_tokens)
                    sent = int(bodies[i].get("max_tokens", cap))
                    if b["max_tokens"] >= sent:  # nothing learned from the words: halve the cap
                        b["max_tokens"] = max(1, sent // 2)
                    resend[i] = (chats[i], b)
                    continue
                fitted = self._refit(chats[i], refusal, reserve)
                if fitted is not None:
                    resend[i], refit[i] = (fitted, body(fitted)), True
            order = list(resend)
            clamped |= {i for i in order if cap is not None and resend[i][1].get("max_tokens", cap) < cap}
            self._account(kind, {"retries": len(order)})
            again_answers = self._send(kind, [resend[i][1] for i in order], count_refused=False)
            self._note_answered([resend[i][0] for i in order], again_answers)
            for i, a in zip(order, again_answers, strict=True):
                answers[i] = a
        return answers, refit, [i in clamped for i in range(len(chats))]

    def _cap_only(self, chat: Chat, refusal: ContextRefusal, reserve: int) -> bool:
        """Whether a reply-cap refusal leaves the prompt as it is: the limits it states are kept, and
        the prompt (the server's count, else ours) fits the budget they leave for ``reserve``."""
        if refusal.reply_limit:
            self._reply_limit = min(refusal.reply_limit, self._reply_limit or refusal.reply_limit)
        if refusal.limit and refusal.limit > self._answered_tokens:
            self._fit_limit = min(refusal.limit, self._fit_limit or refusal.limit)
        if not refusal.limit:
            return True
        n = refusal.prompt_tokens if refusal.prompt_tokens is not None else self.count_tokens(chat)
        return n <= max(refusal.limit - reserve, refusal.limit // 2)

    def reply_room(self, chat: Chat, max_tokens: int, prompt_tokens: int | None = None) -> int:
        """The ``max_tokens`` sent for ``chat``: ``max_tokens``, but at most what the context leaves.

        The context is ``context_length`` or a smaller limit a refusal stated; the prompt counts
        ``prompt_tokens`` (the server's own count) when given, else :meth:`count_tokens`; a reply
        limit a server stated caps it too. At least 1 (a prompt that fills the context is refused
        and fitted).
        """
        limit = min(self.context_length, self._fit_limit or self.context_length)
        n = self.count_tokens(chat) if prompt_tokens is None else int(prompt_tokens)
        return max(1, min(int(max_tokens), limit - n, self._reply_limit or int(max_tokens)))

    def _note_answered(self, chats: Sequence[Chat], answers: Sequence[Any]) -> None:
        """Remember the longest prompt answered (the server's count, else a tokenizer's; never the estimate)."""
        for chat, a in zip(chats, answers, strict=True):
            if a.body is None:
                continue
            n = usage_count(a.body, "prompt_tokens")
            if n is None and self.tokens.source != "estimate":
                n = self.count_tokens(chat)
            self._answered_tokens = max(self._answered_tokens, n or 0)

    def _refit(self, chat: Chat, refusal: ContextRefusal, reserve: int) -> Chat | None:
        """``chat`` fitted to the limit a refusal stated; None when it cannot be cut further.

        A stated limit is kept for later prompts unless the server has already answered a longer
        prompt (a refusal contradicted by the server's own answers is that request's matter). With
        no limit stated, the prompt is fitted to half of what was refused.
        """
        sent = self.count_tokens(chat)
        if refusal.prompt_tokens:  # calibrate our count on the server's own count of this prompt
            scale = 1.05 * refusal.prompt_tokens / max(1, sent)
        else:
            scale = 1.0 if self.tokens.source != "estimate" else 1.5
        if refusal.limit:
            limit = refusal.limit
            if refusal.limit > self._answered_tokens:
                self._fit_limit = min(refusal.limit, self._fit_limit or refusal.limit)
        else:
            context = min(self.context_length, self._fit_limit or self.context_length)
            limit = min(int(0.75 * context), math.ceil(sent * scale) // 2)
        budget = max(limit - reserve, limit // 2)
        out, cut = fit_chat(as_chat(chat), lambda c: math.ceil(self.count_tokens(c) * scale), budget)
        return out if cut else None
