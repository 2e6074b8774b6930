"""A counting HTTP proxy in front of an OpenAI-compatible server, for bench_vs_reference.py.

Every request is forwarded unchanged to the upstream server; for chat/text
completion requests the proxy records the request (messages, sampling
parameters), the answer's ``usage`` (prompt and completion tokens, as the
server counted them), the reply text and finish reason, the status, and the
wall-clock start and end (``time.time()``, so other processes' timestamps line
up). Each record is tagged with the proxy's current ``side`` label, which the
benchmark sets before running each side, and appended to a JSONL log as soon
as it completes (a crash keeps what was recorded).

Only loopback: the proxy binds 127.0.0.1. Streaming requests are forwarded
whole (the proxy does not stream), and their tokens are not counted.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

COUNTED_SUFFIXES = ("/chat/completions", "/completions")
PARAMS = ("max_tokens", "max_completion_tokens", "temperature", "top_p", "seed", "stop", "n", "logprobs",
          "top_logprobs", "stream", "response_format")
HOP_HEADERS = {"host", "content-length", "connection", "keep-alive", "transfer-encoding", "accept-encoding",
               "proxy-connection", "te", "upgrade"}


def _reply_text(answer: Mapping[str, Any]) -> tuple[str, str | None]:
    """(text, finish_reason) of the first choice of a (chat) completion answer."""
    try:
        ch = answer["choices"][0]
    except (KeyError, IndexError, TypeError):
        return "", None
    msg = ch.get("message") or {}
    text = msg.get("content") if isinstance(msg, Mapping) else None
    if text is None:
        text = ch.get("text") or ""
    return str(text), ch.get("finish_reason")


class CountingProxy:
    """Forward to ``upstream`` (an OpenAI base URL such as ``http://127.0.0.1:8000/v1``) and count.

    ``start()`` returns the proxy's base URL (same path prefix as the upstream);
    set ``side`` to tag the records that follow; ``records`` holds every counted
    request (dicts, see the module doc); ``totals(side)`` sums them.
    """

    def __init__(self, upstream: str, log_path: Path | None = None, timeout_s: float = 3600.0) -> None:
        parts = urlsplit(upstream.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"upstream URL {upstream!r} is not http(s)://HOST:PORT/PATH")
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.prefix = parts.path
        self.side = "idle"
        self.records: list[dict[str, Any]] = []
        self.log_path = log_path
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_s, connect=10.0),
                                    limits=httpx.Limits(max_connections=512, max_keepalive_connections=64))
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> str:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                proxy._handle(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                proxy._handle(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="counting-proxy", daemon=True)
        self._thread.start()
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.prefix}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self._client.close()

    # ------------------------------------------------------------------ forwarding
    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        side, t0 = self.side, time.time()
        length = int(h.headers.get("content-length") or 0)
        body = h.rfile.read(length) if length else b""
        headers = {k: v for k, v in h.headers.items() if k.lower() not in HOP_HEADERS}
        headers["accept-encoding"] = "identity"
        try:
            r = self._client.request(method, self.origin + h.path, content=body, headers=headers)
            status, payload, ctype = r.status_code, r.content, r.headers.get("content-type", "application/json")
        except httpx.HTTPError as exc:
            status, ctype = 502, "application/json"
            payload = json.dumps({"error": {"message": f"proxy: upstream failed ({type(exc).__name__}: {exc})"}}).encode()
        t1 = time.time()
        h.send_response(status)
        h.send_header("content-type", ctype)
        h.send_header("content-length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)
        path = h.path.split("?", 1)[0].rstrip("/")
        if method == "POST" and path.endswith(COUNTED_SUFFIXES):
            self._record(side, path, body, status, payload, t0, t1)

    def _record(self, side: str, path: str, body: bytes, status: int, payload: bytes, t0: float, t1: float) -> None:
        try:
            req = json.loads(body or b"{}")
        except ValueError:
            req = {}
        answer: Mapping[str, Any] = {}
        if status < 400:
            try:
                answer = json.loads(payload)
            except ValueError:
                answer = {}
        usage = answer.get("usage") or {} if isinstance(answer, Mapping) else {}
        text, finish = _reply_text(answer) if isinstance(answer, Mapping) else ("", None)
        rec = {
            "side": side, "path": path, "t_start": t0, "t_end": t1, "status": status,
            "model": req.get("model"), "messages": req.get("messages"), "prompt": req.get("prompt"),
            "params": {k: req[k] for k in PARAMS if k in req},
            "prompt_tokens": usage.get("prompt_tokens"), "completion_tokens": usage.get("completion_tokens"),
            "finish_reason": finish, "reply": text,
        }
        line = json.dumps(rec, ensure_ascii=False)
        with self._lock:
            self.records.append(rec)
            if self.log_path is not None:
                with open(self.log_path, "a", encoding="utf-8") as fh:
                    fh.write(line + "\n")


def totals(records: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Requests, failed requests (HTTP >= 400), prompt/completion tokens and the longest prompt (tokens)."""
    out = {"requests": 0, "failed_requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "longest_prompt": 0}
    for r in records:
        out["requests"] += 1
        out["failed_requests"] += int(r["status"] >= 400)
        p, c = int(r.get("prompt_tokens") or 0), int(r.get("completion_tokens") or 0)
        out["prompt_tokens"] += p
        out["completion_tokens"] += c
        out["longest_prompt"] = max(out["longest_prompt"], p)
    return out


def read_log(path: Path) -> list[dict[str, Any]]:
    """The records of a proxy log file (JSONL), skipping a torn last line."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
