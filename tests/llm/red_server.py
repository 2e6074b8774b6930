"""A scripted, misbehaving OpenAI-compatible server on 127.0.0.1 for the red-team tests.

Unlike ``fake_server.FakeServer`` (a well-behaved vLLM look-alike), every answer here is decided by
the test: ``Scripted(handler)`` calls ``handler(request)`` for each request (``{"method", "path",
"body"}``) and sends back the :class:`Reply` it returns, byte for byte, including broken ones: a
body that is not JSON, a gzip header over garbage, a connection reset, a body that never ends
(``mode="hang"``: headers then silence; ``mode="trickle"``: one blank byte at a time), a body cut
off mid-way (``mode="close_mid"``), a body sent in chunks with no ``Content-Length`` (``mode="chunked"``).
``port`` lets a second server take the first one's place.
"""

from __future__ import annotations

import json
import math
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FOREVER_S = 30.0  # how long "hang" and "trickle" go on before the server thread gives up (stopped at exit)


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict/list: JSON; str/bytes: sent as is
    headers: dict[str, str] = field(default_factory=dict)
    mode: str = "normal"  # normal | hang | trickle | close_mid | reset | chunked
    content_type: str = "application/json"


def chat_answer(top: list[tuple[str, Any]] | None, content: str | None = "First",
                usage: Any = None, finish: str = "stop") -> dict:
    """A chat-completions answer; ``top``: the first token's top log-probabilities (None: ``logprobs: null``)."""
    choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": content},
                              "finish_reason": finish, "logprobs": None}
    if top is not None:
        listed = [{"token": t, "logprob": lp} for t, lp in top]
        first = listed[0] if listed else {"token": content, "logprob": 0.0}
        choice["logprobs"] = {"content": [{**first, "top_logprobs": listed}]}
    return {"id": "cmpl-1", "object": "chat.completion", "choices": [choice],
            "usage": usage if usage is not None else {"prompt_tokens": 10, "completion_tokens": 1}}


def models(*entries: dict) -> dict:
    return {"object": "list", "data": list(entries)}


def log(p: float) -> float:
    return math.log(p)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Scripted:
    """``with Scripted(handler) as s:``; ``s.url`` is ``http://127.0.0.1:PORT/v1``; ``s.log`` every request."""

    def __init__(self, handler: Callable[[dict], Reply], port: int = 0) -> None:
        self.handler = handler
        self.log: list[dict] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def _any(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                req = {"method": self.command, "path": self.path, "body": body,
                       "accept_encoding": self.headers.get("Accept-Encoding")}
                with server.lock:
                    server.log.append(req)
                rep = server.handler(req)
                data = rep.body
                if isinstance(data, dict | list):
                    data = json.dumps(data).encode()
                elif isinstance(data, str):
                    data = data.encode()
                data = data or b""
                if rep.mode == "reset":  # RST instead of an answer
                    self.close_connection = True
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                self.send_response(rep.status)
                self.send_header("Content-Type", rep.content_type)
                if rep.mode in ("trickle", "chunked"):
                    self.send_header("Transfer-Encoding", "chunked")
                else:
                    extra = 1000 if rep.mode in ("hang", "close_mid") else 0  # promise more than is sent
                    self.send_header("Content-Length", str(len(data) + extra))
                for k, v in rep.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    if rep.mode == "hang":
                        server.stop.wait(FOREVER_S)
                    elif rep.mode == "trickle":
                        t0 = time.monotonic()
                        while not server.stop.is_set() and time.monotonic() - t0 < FOREVER_S:
                            self.wfile.write(b"1\r\n \r\n")  # one blank (valid leading JSON whitespace)
                            self.wfile.flush()
                            server.stop.wait(0.05)
                    elif rep.mode == "chunked":
                        for i in range(0, len(data), 1 << 16):
                            piece = data[i:i + (1 << 16)]
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        self.wfile.write(b"0\r\n\r\n")
                    else:
                        self.wfile.write(data)
                except OSError:
                    pass
                if rep.mode in ("hang", "trickle", "close_mid"):
                    self.close_connection = True

            do_GET = do_POST = _any

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def chats(self) -> list[dict]:
        """The chat-completions requests received, in order."""
        with self.lock:
            return [r["body"] for r in self.log if r["path"].endswith("/chat/completions")]

    def __enter__(self) -> Scripted:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
