"""The process a sandboxed adapter runs in (``python -m personalrewardbench.submissions.worker R W``).

Started already isolated (bubblewrap; see :mod:`personalrewardbench.submissions.isolation`),
it reads one ``start`` message (limits, the snapshot folder, config) from fd R, sets the
per-process limits, loads the adapter, then serves ``setup``/``fit``/``predict``/
``artifacts``/``usage`` requests, echoing each request's ``id``. The adapter's LLM calls go
back to the harness over the same pipes (:class:`RemoteLLM`), so no model cache, key or
network is needed in here. Once the adapter's code has run, nothing this process sends is
trusted: the harness checks every message.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from personalrewardbench.submissions.protocol import (
    MAX_VALUES,
    Channel,
    ChannelClosed,
    chat_to_list,
    history_from_dict,
    query_from_dict,
)


def _set_limits(limits: dict[str, Any]) -> list[str]:
    notes = []
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return ["resource limits unavailable on this OS"]
    wanted = {
        "RLIMIT_AS": limits.get("memory_mb") and int(limits["memory_mb"]) * 1024 * 1024,
        "RLIMIT_CPU": limits.get("cpu_s") and int(limits["cpu_s"]),
        "RLIMIT_FSIZE": limits.get("fsize_mb") and int(limits["fsize_mb"]) * 1024 * 1024,
        "RLIMIT_CORE": 0,
        # tasks (processes and threads) of the sandbox user in its own user namespace (Linux >= 5.14 counts
        # per user namespace), and open files per process (each pipe or socket is charged its buffer size)
        "RLIMIT_NPROC": limits.get("processes") and int(limits["processes"]),
        "RLIMIT_NOFILE": limits.get("files") and int(limits["files"]),
    }
    for name, value in wanted.items():
        if value is None or value is False or not hasattr(resource, name):
            continue
        try:
            hard = resource.getrlimit(getattr(resource, name))[1]
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)
            resource.setrlimit(getattr(resource, name), (value, value))
        except (ValueError, OSError) as exc:
            notes.append(f"{name} not enforced here ({exc})")
    return notes


class RemoteLLM:
    """An LLM whose requests are answered by the harness (same interface as ``llm.base.LLM``)."""

    def __init__(self, worker: Worker, identity: str, context_length: int) -> None:
        from personalrewardbench.llm.base import Usage

        self._worker = worker
        self._identity = identity
        self._context_length = context_length
        self.usage = Usage()

    @property
    def identity(self) -> str:
        return self._identity

    @property
    def context_length(self) -> int:
        return self._context_length

    def count_tokens(self, chat: Any) -> int:
        return int(self._worker.call_harness("count_tokens", {"chat": chat_to_list(chat)}))

    def _batched(self, fn: str, chats: Sequence[Any], extra: dict[str, Any]) -> list[Any]:
        """One harness call per part of at most ``part_bytes`` and a quarter of the protocol's
        MAX_VALUES JSON values (one part for any usual batch)."""
        lists = [chat_to_list(c) for c in chats]
        out: list[Any] = []
        start, size, values = 0, 0, 0
        for i, c in enumerate(lists):
            n = sum(len(m["content"]) * 4 + 64 for m in c)  # a bound on its JSON size (UTF-8, escapes)
            v = 2 + 3 * len(c)  # its list, a comma, and per message a dict and two separators
            if i > start and (size + n > self._worker.part_bytes or values + v > MAX_VALUES // 4):
                out += self._worker.call_harness(fn, {"chats": lists[start:i], **extra})
                start, size, values = i, 0, 0
            size += n
            values += v
        if start < len(lists) or not lists:
            out += self._worker.call_harness(fn, {"chats": lists[start:], **extra})
        return out

    def generate(self, chats: Sequence[Any], params: Any = None) -> list[Any]:
        from dataclasses import asdict

        from personalrewardbench.llm.base import Completion

        p = asdict(params) if params is not None else None
        t0 = time.monotonic()
        comps = [Completion(**c) for c in self._batched("generate", chats, {"params": p})]
        self._account(comps, time.monotonic() - t0)
        return comps

    def choice_logprobs(self, chats: Sequence[Any], choices: Sequence[str]) -> list[dict[str, float]]:
        t0 = time.monotonic()
        out = self._batched("choice_logprobs", chats, {"choices": list(choices)})
        self.usage.calls += len(out)
        self.usage.seconds += time.monotonic() - t0
        return [{str(k): float(v) for k, v in d.items()} for d in out]

    def _account(self, comps: list[Any], seconds: float) -> None:
        self.usage.calls += len(comps)
        self.usage.cache_hits += sum(c.cached for c in comps)
        self.usage.prompt_tokens += sum(c.prompt_tokens for c in comps)
        self.usage.completion_tokens += sum(c.completion_tokens for c in comps)
        self.usage.seconds += seconds

    def close(self) -> None:
        pass


def _plain(value: Any) -> Any:
    """A prediction as JSON: null, a number (NaN kept so the harness can report it), or a type marker."""
    if value is None:
        return None
    if isinstance(value, bool | str | bytes):
        return {"type": type(value).__name__}
    try:
        f = float(value)
    except (TypeError, ValueError):
        return {"type": type(value).__name__}
    return f if math.isfinite(f) else str(f)


class Worker:
    def __init__(self, chan: Channel) -> None:
        self.chan = chan
        self.method: Any = None
        self.lock = threading.Lock()
        self.part_bytes = 16 * 1024 * 1024

    def call_harness(self, fn: str, args: dict[str, Any]) -> Any:
        from personalrewardbench.llm.base import LLMError

        with self.lock:
            self.chan.send({"op": "llm", "fn": fn, "args": args})
            reply = self.chan.recv()
        if not reply.get("ok"):
            raise LLMError(str(reply.get("error", "LLM request failed in the harness")))
        return reply.get("result")

    def start(self, msg: dict[str, Any]) -> dict[str, Any]:
        workdir = msg.get("workdir") or "/tmp/work"
        os.makedirs(workdir, exist_ok=True)
        os.chdir(workdir)
        self.part_bytes = max(1 << 16, int(msg.get("message_bytes") or self.part_bytes) // 4)
        notes = _set_limits(msg.get("limits") or {})
        from personalrewardbench.methods import load_method

        self.method = load_method(msg["folder"], config=msg.get("config") or {})
        try:
            config = self.method.get_config()
        except Exception:  # noqa: BLE001 - adapter code; fall back to what was asked
            config = msg.get("config") or {}
        return {"name": getattr(self.method, "name", ""), "capabilities": sorted(self.method.capabilities),
                "config": config, "notes": notes}

    def setup(self, msg: dict[str, Any]) -> None:
        from personalrewardbench.methods import MethodEnv

        llm = None
        if msg.get("llm"):
            llm = RemoteLLM(self, msg["llm"]["identity"], int(msg["llm"]["context_length"]))
        cache = Path(os.getcwd()) / "prb-cache"
        cache.mkdir(exist_ok=True)
        self.method.setup(MethodEnv(seed=int(msg.get("seed", 0)), llm=llm, cache_dir=cache,
                                    device=str(msg.get("device", "cpu")), show_progress=bool(msg.get("show_progress")),
                                    options=dict(msg.get("options") or {})))

    def handle(self, msg: dict[str, Any]) -> Any:
        op = msg.get("op")
        if op == "start":
            return self.start(msg)
        if op == "setup":
            return self.setup(msg)
        if op == "fit":
            return self.method.fit([history_from_dict(h) for h in msg["histories"]])
        if op == "predict":
            out = self.method.predict([query_from_dict(q) for q in msg["queries"]])
            return [_plain(v) for v in out] if isinstance(out, Sequence) or hasattr(out, "__iter__") else _plain(out)
        if op == "artifacts":
            return {str(k): v if isinstance(v, str) else {"type": type(v).__name__}
                    for k, v in dict(self.method.artifacts() or {}).items()}
        if op == "usage":
            import json

            return json.loads(json.dumps(dict(self.method.usage() or {}), default=str))
        raise ValueError(f"unknown op {op!r}")

    def serve(self) -> None:
        while True:
            try:
                msg = self.chan.recv()
            except ChannelClosed:
                return
            rid = msg.get("id")
            if msg.get("op") == "close":
                self.chan.send({"id": rid, "ok": True, "result": None})
                return
            try:
                result = self.handle(msg)
                reply = {"ok": True, "result": result}
            except MemoryError:
                reply = {"ok": False, "kind": "memory", "error": "MemoryError", "traceback": ""}
            except BaseException as exc:  # noqa: BLE001 - report anything the adapter raises
                tb = traceback.format_exc(limit=-12)
                reply = {"ok": False, "kind": "crash", "error": f"{type(exc).__name__}: {exc}"[:2000],
                         "traceback": tb[-6000:]}
            self.chan.send({"id": rid, **reply})


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    read_fd, write_fd = int(argv[0]), int(argv[1])
    os.dup2(2, 1)  # the adapter's prints go to the log, never into the protocol
    sys.stdout = sys.stderr
    sys.dont_write_bytecode = True
    Worker(Channel(read_fd, write_fd, trusted=True)).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
