"""Wire format between the harness and a sandboxed adapter process.

Newline-delimited JSON over two pipes (never pickle: the harness executes nothing the
adapter sends). Everything the adapter's side sends is untrusted bytes, so the receiving
:class:`Channel` of the harness caps each message's size (``max_bytes``; longer is a
:class:`ChannelError` at once, without buffering the rest), parses with bounded integers
(at most :data:`MAX_INT_DIGITS` digits), rejects nesting deeper than :data:`MAX_DEPTH`
and messages of more than :data:`MAX_VALUES` values (counted before parsing, so a message
of millions of tiny values never costs the harness gigabytes), all without recursion in
harness code. Any failure to parse is a
:class:`ChannelError`, which the sandbox reports as the adapter breaking the protocol.

The serializers below turn the only data an adapter may see (histories and label-free
queries) into plain JSON.
"""

from __future__ import annotations

import json
import os
import select
import time
from collections.abc import Mapping, Sequence
from typing import Any

from personalrewardbench.data.schema import Message, PreferencePair, Query, UserHistory, context_from_list

MAX_DEPTH = 64  # nesting of arrays/objects in one message from the adapter
MAX_INT_DIGITS = 40  # a longer integer literal is not a number any reply needs
# JSON values in one message (counted as separators and openers before parsing): json.loads makes an
# object of ~30-60 bytes per value, so millions of tiny values ("[],[],...") would cost the harness
# ~50x the message's size; a million keeps any message under ~100 MB of objects, above any real reply
MAX_VALUES = 1_000_000
READ_CHUNK = 1 << 20


class ChannelClosed(RuntimeError):
    """The other side closed its end (exited or crashed)."""


class ChannelTimeout(RuntimeError):
    """No complete message before the deadline."""


class ChannelError(RuntimeError):
    """The other side sent something that is not a protocol message."""


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer with {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS} allowed)")
    return int(text)


def check_depth(obj: Any, max_depth: int = MAX_DEPTH) -> None:
    """Raise ValueError if ``obj`` nests lists/dicts deeper than ``max_depth`` (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > max_depth:
            raise ValueError(f"nested deeper than {max_depth} levels")
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))


def decode_message(line: bytes, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """One protocol message from raw bytes; ChannelError for anything that is not a JSON object
    within the depth, value-count and integer-size bounds (never RecursionError, OverflowError or a
    traceback)."""
    values = line.count(b",") + line.count(b"[") + line.count(b"{")
    if values > MAX_VALUES:
        raise ChannelError(f"not a valid message (about {values} JSON values; at most {MAX_VALUES} allowed); "
                           f"first bytes {line[:80]!r}")
    try:
        obj = json.loads(line, parse_int=_bounded_int)
        check_depth(obj, max_depth)
    except (ValueError, RecursionError, MemoryError, OverflowError, TypeError) as exc:
        detail = str(exc)[:200] if not isinstance(exc, RecursionError) else "nested too deeply"
        raise ChannelError(f"not a valid message ({type(exc).__name__}: {detail}); first bytes {line[:80]!r}") \
            from None
    if not isinstance(obj, dict):
        raise ChannelError(f"not a JSON object; first bytes {line[:80]!r}")
    return obj


class Channel:
    """Send/receive one JSON object per line over a pair of file descriptors.

    ``max_bytes``: the largest message :meth:`recv` accepts; with ``trusted`` (the adapter's
    side, which receives only the harness's own messages) there is no cap and messages are
    parsed with plain :func:`json.loads`, else with :func:`decode_message`.
    """

    def __init__(self, read_fd: int, write_fd: int, *, max_bytes: int | None = None, trusted: bool = False) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.max_bytes = None if trusted else max_bytes
        self.trusted = trusted
        self._buf = bytearray()

    def send(self, obj: Mapping[str, Any], deadline: float | None = None) -> None:
        data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        view = memoryview(data)
        while view:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ChannelTimeout("timed out sending")
                _, ready, _ = select.select([], [self.write_fd], [], min(left, 1.0))
                if not ready:
                    continue
            try:
                n = os.write(self.write_fd, view[: 1 << 20])
            except OSError as exc:  # BrokenPipeError included
                raise ChannelClosed(f"pipe closed ({exc})") from None
            view = view[n:]

    def recv(self, deadline: float | None = None) -> dict[str, Any]:
        scanned = 0
        while True:
            nl = self._buf.find(b"\n", scanned)
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                if self.trusted:
                    return json.loads(line)
                if self.max_bytes is not None and len(line) > self.max_bytes:
                    raise ChannelError(f"a message of {len(line)} bytes; the limit is {self.max_bytes} bytes")
                return decode_message(line)
            scanned = len(self._buf)
            if self.max_bytes is not None and len(self._buf) > self.max_bytes:
                raise ChannelError(f"a message longer than the limit of {self.max_bytes} bytes")
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ChannelTimeout("timed out waiting")
                ready, _, _ = select.select([self.read_fd], [], [], min(left, 1.0))
                if not ready:
                    continue
            try:
                chunk = os.read(self.read_fd, READ_CHUNK)
            except OSError as exc:
                raise ChannelClosed(f"pipe closed ({exc})") from None
            if not chunk:
                raise ChannelClosed("pipe closed")
            self._buf.extend(chunk)


def history_to_dict(h: UserHistory) -> dict[str, Any]:
    return {
        "user_id": h.user_id,
        "dataset": h.dataset,
        "train": [p.to_dict() for p in h.train],
        "val": [p.to_dict() for p in h.val],
        "profile": dict(h.profile) if h.profile is not None else None,
    }


def history_from_dict(d: Mapping[str, Any]) -> UserHistory:
    return UserHistory(
        user_id=str(d["user_id"]),
        dataset=str(d["dataset"]),
        train=tuple(PreferencePair.from_dict(p) for p in d["train"]),
        val=tuple(PreferencePair.from_dict(p) for p in d["val"]),
        profile=d.get("profile"),
    )


def query_to_dict(q: Query) -> dict[str, Any]:
    """Exactly the five label-free fields of a Query."""
    return {
        "query_id": q.query_id,
        "user_id": q.user_id,
        "context": [m.to_dict() for m in q.context],
        "first": q.first,
        "second": q.second,
    }


def query_from_dict(d: Mapping[str, Any]) -> Query:
    return Query(query_id=str(d["query_id"]), user_id=str(d["user_id"]), context=context_from_list(d["context"]),
                 first=str(d["first"]), second=str(d["second"]))


def chat_to_list(chat: Sequence[Any]) -> list[dict[str, str]]:
    out = []
    for m in chat:
        if isinstance(m, Message):
            out.append(m.to_dict())
        elif isinstance(m, Mapping):
            out.append({"role": str(m["role"]), "content": str(m["content"])})
        else:
            raise TypeError(f"a chat message must be a Message or a {{role, content}} dict, not {type(m).__name__}")
    return out


def chat_from_list(items: Any) -> tuple[Message, ...]:
    if not isinstance(items, list) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in items
    ):
        raise ValueError("a chat must be a list of {role, content} objects with string values")
    return tuple(Message(m["role"], m["content"]) for m in items)
