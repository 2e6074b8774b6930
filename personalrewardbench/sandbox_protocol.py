"""Wire format between the harness and a sandboxed adapter process.

Newline-delimited JSON over two pipes (never pickle: the harness must not
execute anything the adapter sends). Both sides use :class:`Channel`; the
serializers below turn the only data an adapter may see (histories and
label-free queries) into plain JSON.
"""

from __future__ import annotations

import json
import os
import select
import time
from collections.abc import Mapping, Sequence
from typing import Any

from personalrewardbench.data.schema import Message, PreferencePair, Query, UserHistory, context_from_list

MAX_FRAME_BYTES = 512 * 1024 * 1024  # one message; more is treated as a protocol violation


class ChannelClosed(RuntimeError):
    """The other side closed its end (exited or crashed)."""


class ChannelTimeout(RuntimeError):
    """No complete message before the deadline."""


class ChannelError(RuntimeError):
    """The other side sent something that is not a protocol message."""


class Channel:
    """Send/receive one JSON object per line over a pair of file descriptors."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self._buf = bytearray()

    def send(self, obj: Mapping[str, Any], deadline: float | None = None) -> None:
        data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        view = memoryview(data)
        while view:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ChannelTimeout("timed out sending")
                _, ready, _ = select.select([], [self.write_fd], [], left)
                if not ready:
                    continue
            try:
                n = os.write(self.write_fd, view[: 1 << 20])
            except (BrokenPipeError, OSError) as exc:
                raise ChannelClosed(f"pipe closed ({exc})") from None
            view = view[n:]

    def recv(self, deadline: float | None = None) -> dict[str, Any]:
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                try:
                    obj = json.loads(line)
                except ValueError as exc:
                    raise ChannelError(f"not JSON: {line[:200]!r} ({exc})") from None
                if not isinstance(obj, dict):
                    raise ChannelError(f"not a JSON object: {line[:200]!r}")
                return obj
            if len(self._buf) > MAX_FRAME_BYTES:
                raise ChannelError(f"message larger than {MAX_FRAME_BYTES} bytes")
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ChannelTimeout("timed out waiting")
                ready, _, _ = select.select([self.read_fd], [], [], min(left, 1.0))
                if not ready:
                    continue
            chunk = os.read(self.read_fd, 1 << 20)
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
