"""One chat-completions exchange with an OpenAI-compatible server: the reply's byte limit, its bounded
read, and the record of its outcome (:class:`Answer`).

A reply is read as it arrives and abandoned once it passes :func:`reply_byte_limit` bytes: a server
that sends megabytes for an 8-token reply (a runaway, a proxy's error page, a hostile server) fails
that request instead of filling memory and being parsed as an answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from personalrewardbench.llm.bounded_body import REQUEST_HEADERS, BadEncoding, BodyTooLarge, BoundedBody
from personalrewardbench.llm.openai_answers import answer_error, count_field

#: Bytes every reply may take whatever its cap: the JSON frame, ``usage``, ids, a refusal's message, the
#: extra fields some servers add (vLLM's ``kv_transfer_params``, OpenAI's ``system_fingerprint``).
REPLY_FLOOR_BYTES = 1 << 20
#: Bytes per requested reply token: a token's text is rarely over 16 characters, and JSON writes a
#: character in at most 6 bytes (``\\uXXXX``), so ~100 bytes a token; 1 KiB leaves ten times that.
BYTES_PER_TOKEN = 1024
#: Bytes per listed log-probability, per reply token, when ``logprobs`` are asked: one entry
#: ``{"token": ..., "logprob": ..., "bytes": [...]}`` is ~150 bytes for a 16-byte token; 512 leaves 3x.
BYTES_PER_LOGPROB = 512
#: The reply cap assumed for a request that names none.
DEFAULT_REPLY_TOKENS = 8192


def reply_byte_limit(body: Mapping[str, Any]) -> int:
    """The most bytes the answer to the chat request ``body`` may take before it is abandoned.

    ``REPLY_FLOOR_BYTES + max_tokens * (BYTES_PER_TOKEN + (top_logprobs + 1) * BYTES_PER_LOGPROB)``,
    the log-probability part only when ``logprobs`` is asked (each reply token lists itself and its
    ``top_logprobs`` alternatives). The per-token figures are about ten and three times what a
    real reply takes (see the constants), so no honest answer comes near it: ``max_tokens=8``
    allows ~1.0 MiB, a one-token choice request with 20 log-probabilities ~1.0 MiB, an 8,192-token
    reply ~9 MiB.
    """
    tokens = count_field(body.get("max_tokens")) or DEFAULT_REPLY_TOKENS
    per = BYTES_PER_TOKEN
    if body.get("logprobs"):
        per += ((count_field(body.get("top_logprobs")) or 0) + 1) * BYTES_PER_LOGPROB
    return REPLY_FLOOR_BYTES + tokens * per


class Abandoned(Exception):
    """A reply that is not read to the end: the request fails (not refused, not retried)."""


class TooLarge(Abandoned):
    """A reply passed its byte limit; the request fails (it is not retried: a server that sends a reply
    this large would most likely send it again)."""

    def __init__(self, status: int, limit: int) -> None:
        super().__init__(f"the answer passed {limit:,} bytes, far more than the reply cap asked allows "
                         f"(HTTP {status}); abandoned")
        self.status = status


async def post_limited(client: httpx.AsyncClient, path: str, body: dict, timeout: httpx.Timeout,
                       limit: int) -> tuple[httpx.Response, bytes]:
    """POST ``body`` as JSON to ``path``; the response (headers, status) and its body, read as it arrives.

    The raw bytes are decoded here under the bound (:mod:`~personalrewardbench.llm.bounded_body`: httpx
    would inflate a whole chunk, or several layers of gzip, before anything could count them).
    Raises :class:`TooLarge` once the decoded body passes ``limit`` bytes, or its ``Content-Length``
    says it will; :class:`Undecodable` for an encoding not decoded here or corrupt compressed data;
    httpx errors propagate.
    """
    async with client.stream("POST", path, json=body, timeout=timeout, headers=REQUEST_HEADERS) as r:
        stated = count_field(_number(r.headers.get("content-length")))
        if stated is not None and stated > limit:
            raise TooLarge(r.status_code, limit)
        try:
            reader = BoundedBody(r.headers.get("content-encoding"), limit)
            async for chunk in r.aiter_raw():
                reader.feed(chunk)
            return r, reader.finish()
        except BodyTooLarge:
            raise TooLarge(r.status_code, limit) from None
        except BadEncoding as exc:
            raise Undecodable(r.status_code, str(exc)) from None


class Undecodable(Abandoned):
    """A reply in a ``Content-Encoding`` not decoded here (several layers, br, zstd, ...) or corrupt; the
    request fails, not retried (the backend asks for ``identity``)."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(f"the answer cannot be decoded: {why} (HTTP {status}); abandoned")
        self.status = status


def _number(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


@dataclass
class Answer:
    """One request's outcome: the JSON of a successful answer, or the status and text of a failure or refusal.

    ``refusal`` is a :class:`~personalrewardbench.llm.openai_server.ContextRefusal` when the failure is
    a context-length refusal.
    """

    body: dict | None
    status: int = 200
    error: str = ""
    retries: int = 0
    refusal: Any = None
    transient: bool = False  # failed after all retries (retryable status, timeout, dropped connection)


def read_answer(status: int, data: bytes, attempt: int) -> Answer:
    """A 2xx/3xx answer: its JSON when it holds a choice, else a failed (not refused) request."""
    try:
        parsed = json.loads(data)
    except ValueError:
        return Answer(None, status, "the answer is not JSON", retries=attempt)
    why = answer_error(parsed)
    return Answer(None, status, why, retries=attempt) if why else Answer(parsed, status, retries=attempt)
