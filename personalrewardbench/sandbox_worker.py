"""The process a sandboxed adapter runs in (``python -m personalrewardbench.sandbox_worker R W``).

It reads one ``start`` message (isolation plan, limits, submission folder,
config) from fd R, isolates itself (see :mod:`personalrewardbench.sandbox_isolation`),
loads the adapter, then serves ``setup``/``fit``/``predict``/``artifacts``/``usage``
requests. The adapter's LLM calls go back to the harness over the same pipes
(:class:`RemoteLLM`), so no model cache, key or network is needed in here.
Everything this process sends is checked by the harness; nothing here is trusted.
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

from personalrewardbench.sandbox_protocol import (
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
        "RLIMIT_NPROC": limits.get("nproc") and int(limits["nproc"]),  # per uid: only set for the dedicated uid
    }
    for name, value in wanted.items():
        if value is None or value is False or not hasattr(resource, name):
            continue
        try:
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

    def generate(self, chats: Sequence[Any], params: Any = None) -> list[Any]:
        from dataclasses import asdict

        from personalrewardbench.llm.base import Completion

        p = asdict(params) if params is not None else None
        t0 = time.monotonic()
        out = self._worker.call_harness("generate", {"chats": [chat_to_list(c) for c in chats], "params": p})
        comps = [Completion(**c) for c in out]
        self._account(comps, time.monotonic() - t0)
        return comps

    def choice_logprobs(self, chats: Sequence[Any], choices: Sequence[str]) -> list[dict[str, float]]:
        t0 = time.monotonic()
        out = self._worker.call_harness("choice_logprobs",
                                        {"chats": [chat_to_list(c) for c in chats], "choices": list(choices)})
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

    def call_harness(self, fn: str, args: dict[str, Any]) -> Any:
        from personalrewardbench.llm.base import LLMError

        with self.lock:
            self.chan.send({"op": "llm", "fn": fn, "args": args})
            reply = self.chan.recv()
        if not reply.get("ok"):
            raise LLMError(str(reply.get("error", "LLM request failed in the harness")))
        return reply.get("result")

    def start(self, msg: dict[str, Any]) -> dict[str, Any]:
        from personalrewardbench import sandbox_isolation as iso

        mode = msg["mode"]
        if mode in ("root", "userns"):
            iso.enter_private_root(msg["root"], msg["binds"], int(msg["tmp_mb"]), drop_uid=mode == "root",
                                   gpu=bool(msg.get("gpu")))
            os.makedirs("/tmp/work", exist_ok=True)
            os.chdir("/tmp/work")
        else:
            os.chdir(msg["workdir"])
        notes = _set_limits(msg.get("limits") or {})
        from personalrewardbench.methods import load_method

        self.method = load_method(msg["folder"], config=msg.get("config") or {})
        try:
            config = self.method.get_config()
        except Exception:  # noqa: BLE001 - adapter code; fall back to what was asked
            config = msg.get("config") or {}
        return {"name": getattr(self.method, "name", ""), "capabilities": sorted(self.method.capabilities),
                "config": config, "notes": notes, "uid": os.getuid() if hasattr(os, "getuid") else None}

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
            if msg.get("op") == "close":
                self.chan.send({"ok": True, "result": None})
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
            self.chan.send(reply)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    read_fd, write_fd = int(argv[0]), int(argv[1])
    os.dup2(2, 1)  # the adapter's prints go to the log, never into the protocol
    sys.stdout = sys.stderr
    Worker(Channel(read_fd, write_fd)).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
