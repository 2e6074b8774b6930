"""Reading an OpenAI-compatible server's answers without trusting their shape.

A 200 answer may still be no answer: an ``{"error": ...}`` object (some proxies), no ``choices``,
a choice without text (``content: null``), a choice the server ``abort``-ed, a ``usage`` block of
strings. Each reader here returns None (or ``"error"``) for what it cannot read, never raises, so
one malformed answer fails its own request and nothing else.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

#: ``finish_reason`` values that mean the server produced no usable answer: vLLM's ``abort`` (the
#: request was cancelled or the engine failed), ``error`` (several servers), ``content_filter``
#: (moderation replaced the answer).
FAILED_FINISH = ("abort", "error", "content_filter")


def answer_choice(body: Any) -> dict | None:
    """The answer's choice with ``index`` 0 (else its first choice); None when ``body`` has no choice."""
    if not isinstance(body, dict):
        return None
    choices = body.get("choices")
    if not isinstance(choices, list):
        return None
    listed = [c for c in choices if isinstance(c, dict)]
    return next((c for c in listed if c.get("index") == 0), listed[0] if listed else None)


def answer_error(body: Any) -> str | None:
    """Why a 200 answer is no answer (an ``error`` object, no choice), or None when it has a choice."""
    if answer_choice(body) is not None:
        return None
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        err = err.get("message") or err
    return f"the answer has no choices{f' (error: {str(err)[:200]})' if err else ''}"


def choice_text(choice: dict) -> str | None:
    """The generated text: ``message.content`` (chat), else ``text`` (completions shape); None when neither."""
    message = choice.get("message")
    if isinstance(message, dict) and isinstance(message.get("content"), str):
        return message["content"]
    return choice["text"] if isinstance(choice.get("text"), str) else None


def finish_reason(choice: dict) -> str:
    """``"length"``, ``"stop"``, or ``"error"`` for no text or a :data:`FAILED_FINISH` reason."""
    reason = choice.get("finish_reason")
    if choice_text(choice) is None or reason in FAILED_FINISH:
        return "error"
    return "length" if reason == "length" else "stop"


def count_field(value: Any) -> int | None:
    """A token count or length as a server writes it: a whole non-negative number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value < 0 or value != int(value):
        return None
    return int(value)


def usage_count(body: Any, key: str) -> int | None:
    """``body["usage"][key]`` as a :func:`count_field`, None when absent or junk."""
    usage = body.get("usage") if isinstance(body, dict) else None
    return count_field(usage.get(key)) if isinstance(usage, dict) else None


def top_logprobs(body: Any) -> list[tuple[str, Any]] | None:
    """The first answer token's listed alternatives (and the token itself) as ``[(text, logprob)]``.

    None when the answer carries no log-probabilities (``logprobs: null``, no content, an empty
    list, or a shape that is not the chat-completions one): the server gave none for this request.
    """
    choice = answer_choice(body)
    logprobs = choice.get("logprobs") if choice else None
    if not isinstance(logprobs, dict):
        return None
    content = logprobs.get("content")
    if isinstance(content, list) and content and isinstance(content[0], dict):
        first = content[0]
        items = _listed(first.get("top_logprobs"))
        if "token" in first and first.get("logprob") is not None:
            items.append((str(first["token"]), first["logprob"]))
        return items or None
    # the completions shape some servers also use for chat: {"tokens", "token_logprobs", "top_logprobs": [{tok: lp}]}
    tops, tokens, lps = logprobs.get("top_logprobs"), logprobs.get("tokens"), logprobs.get("token_logprobs")
    items = _listed(tops[0]) if isinstance(tops, list) and tops else []
    if isinstance(tokens, list) and tokens and isinstance(lps, list) and lps and lps[0] is not None:
        items.append((str(tokens[0]), lps[0]))
    return items or None


def _listed(listed: Any) -> list[tuple[str, Any]]:
    """A top list as ``[(text, logprob)]``: chat's ``[{"token", "logprob"}]`` or the ``{token: logprob}`` form."""
    if isinstance(listed, dict):
        return [(str(t), lp) for t, lp in listed.items() if lp is not None]
    items = [t for t in (listed if isinstance(listed, list) else []) if isinstance(t, dict)]
    return [(str(t.get("token", "")), t["logprob"]) for t in items if t.get("logprob") is not None]


#: How many characters of an answer's ``model`` field are kept (it is shown in warnings and results).
MODEL_NAME_CHARS = 120
#: A dated snapshot an alias resolves to (OpenAI answers ``gpt-4o-mini`` with ``gpt-4o-mini-2024-07-18``,
#: older models with ``-0613``): the same model as the alias asked for.
_SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{4})$")


def other_model(body: Any, names: Sequence[Any]) -> str | None:
    """The ``model`` an answer names when it is none of ``names`` (the name asked, its ``/v1/models``
    entry's id, root, parent); None when it is one of them (any case, or a dated snapshot of one:
    ``_SNAPSHOT``) or the answer names no model (the field absent, empty or not a string).

    The name is returned printable (control characters escaped) and cut to ``MODEL_NAME_CHARS``.
    vLLM echoes the served name asked for; llama.cpp echoes the name asked (older versions
    ``gpt-3.5-turbo``); a proxy may answer with the upstream model's name.
    """
    said = body.get("model") if isinstance(body, dict) else None
    if not isinstance(said, str) or not said.strip():
        return None
    said = said.strip()
    known = {n.strip().casefold() for n in names if isinstance(n, str) and n.strip()}
    low = said.casefold()
    if low in known or _SNAPSHOT.sub("", low) in known:
        return None
    shown = said.encode("unicode_escape").decode("ascii") if not said.isprintable() else said
    return shown[:MODEL_NAME_CHARS]


def first_named_choice(text: str, choices: Sequence[str]) -> str | None:
    """The choice whose name appears first in ``text`` (whole word, any case)."""
    best: tuple[int, int, str] | None = None
    for c in choices:
        m = re.search(rf"(?<![\w]){re.escape(c.strip())}(?![\w])", text, flags=re.IGNORECASE)
        if m and (best is None or (m.start(), -len(c)) < best[:2]):
            best = (m.start(), -len(c), c)
    return best[2] if best else None


_CAP_PATTERNS = (
    re.compile(r"max(?:imum)? allowed:?\s*(\d+)", re.IGNORECASE),  # vLLM: "greater than max allowed: 5"
    re.compile(r"<=\s*(\d+)"),  # OpenAI: "Expected a value <= 20"
    re.compile(r"between 0 and (\d+)", re.IGNORECASE),
    re.compile(r"(?:at most|maximum(?: value)?(?: of| is)?)\s*(\d+)", re.IGNORECASE),
)


def logprobs_cap(status: int, text: str) -> int | None:
    """The most top log-probabilities a refusal says the server gives; 0 when it refuses them, None if unrelated.

    Read from a 400/422 answer that names log-probabilities: vLLM's ``--max-logprobs`` ("Requested
    sample logprobs of 20, which is greater than max allowed: 5"), OpenAI's "Expected a value <= 20".
    """
    if status not in (400, 422) or "logprob" not in text.lower():
        return None
    for pat in _CAP_PATTERNS:
        m = pat.search(text)
        if m:
            return int(m.group(1))
    return 0


def retry_after_s(value: str | None) -> float | None:
    """The seconds a ``Retry-After`` header asks for: a number (``inf`` kept); an HTTP date or junk is None."""
    try:
        wait = float(value or "")
    except ValueError:
        return None
    return wait if wait >= 0 else None  # NaN and negative numbers say nothing
