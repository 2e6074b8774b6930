"""A small OpenAI-compatible server on 127.0.0.1 for the openai backend's protocol tests.

It answers ``GET /v1/models``, ``POST /v1/chat/completions`` and, when given a tokenizer,
``POST /tokenize`` in vLLM's shapes (``{"count", "max_model_len", "tokens"}``). What it says is
set by the test: the model entry, the top log-probabilities (or none, as vllm-project/vllm#47838
does), a context limit it enforces with vLLM's refusal wording (for the prompt, and optionally for
the reply cap), transient failures.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Top = list[tuple[str, float]]


class FakeServer:
    """Start with ``with FakeServer(...) as s:``; ``s.url`` is the base URL (``.../v1``)."""

    def __init__(self, model_id: str = "stub-model", *, root: str | None = None, max_model_len: int | None = 512,
                 top: Top | None = None, tokenizer: Any = None, limit: int | None = None) -> None:
        self.model = {"id": model_id, "object": "model", "owned_by": "vllm"}
        if root is not None:
            self.model["root"] = root
        if max_model_len is not None:
            self.model["max_model_len"] = max_model_len
        self.top: Top = top if top is not None else [("B", math.log(0.6)), (" a", math.log(0.1)),
                                                      ("A", math.log(0.2))]
        self.logprobs = True  # False: answers carry "logprobs": null
        self.answer: Callable[[dict], str] = lambda body: f"I choose B. ({body['messages'][-1]['content']})"
        self.fail_first = 0  # answer 503 to this many chat requests first
        self.tokenizer = tokenizer  # serves /tokenize (chat template applied) and enforces ``limit`` exactly
        self.limit = limit  # refuse prompts longer than this (HTTP 400, vLLM's wording)
        self.count: Callable[[list[dict]], int] | None = None  # prompt counter when there is no tokenizer
        self.refuse: Callable[[dict], bool] = lambda body: False  # refuse these as too long even when they fit
        self.stated_limit: int | None = None  # the limit a refusal states (default: ``limit``)
        self.status_for: Callable[[dict], int | None] = lambda body: None  # answer this HTTP status instead
        self.status_message: Callable[[dict], str] = lambda body: "scripted failure"  # ... with this message
        self.serve_tokenize = True  # with a tokenizer: answer /tokenize (False: only enforce ``limit``)
        # How the server checks ``max_tokens`` against ``limit``: None (it does not), "sum" (prompt +
        # max_tokens must fit: OpenAI's and vLLM <= 0.7's wording) or "max_model_len" (max_tokens alone
        # must fit: vLLM >= 0.11's wording; the server then caps the reply itself)
        self.reply_check: str | None = None
        self.delay_s = 0.0  # wait this long before answering a chat request (a slow reply)
        self.requests: list[dict] = []
        self.tokenize_calls = 0
        self.lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def chat_requests(self) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if "messages" in r and "add_generation_prompt" not in r]

    def prompt_tokens(self, messages: list[dict]) -> int:
        if self.tokenizer is not None:
            ids = self.tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
            return len(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
        if self.count is not None:
            return self.count(messages)
        return sum(len(m["content"].split()) for m in messages)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:  # quiet
                pass

            def _send(self, code: int, body: dict, headers: dict | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models":
                    # vLLM's ModelCard: ``created`` is the time of this answer
                    return self._send(200, {"object": "list", "data": [{**server.model, "created": int(time.time())}]})
                self._send(404, {"error": "not found"})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == "/tokenize":
                    if server.tokenizer is None or not server.serve_tokenize:
                        return self._send(404, {"detail": "Not Found"})
                    with server.lock:
                        server.tokenize_calls += 1
                    ids = server.tokenizer.apply_chat_template(body["messages"], tokenize=True,
                                                               add_generation_prompt=True)
                    ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
                    return self._send(200, {"count": len(ids), "max_model_len": server.model.get("max_model_len"),
                                            "tokens": ids, "token_strs": None})
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": "not found"})
                if server.delay_s:
                    time.sleep(server.delay_s)
                with server.lock:
                    server.requests.append(body)
                    if server.fail_first > 0:
                        server.fail_first -= 1
                        return self._send(503, {"error": "busy"}, {"Retry-After": "0"})
                status = server.status_for(body)
                if status is not None:
                    return self._send(status, {"object": "error", "code": status,
                                               "message": server.status_message(body)})
                n = server.prompt_tokens(body["messages"])
                if (server.limit is not None and n > server.limit) or server.refuse(body):
                    limit = server.stated_limit or server.limit
                    return self._send(400, {"object": "error", "type": "BadRequestError", "code": 400, "message": (
                        f"This model's maximum context length is {limit} tokens. However, your prompt "
                        f"contains {n} input tokens, which exceeds this limit even without any output tokens. "
                        "Please reduce the length of the input prompt.")})
                mt = body.get("max_tokens")
                if server.reply_check and server.limit is not None and isinstance(mt, int):
                    if server.reply_check == "sum" and n + mt > server.limit:
                        return self._send(400, {"object": "error", "type": "BadRequestError", "code": 400, "message": (
                            f"This model's maximum context length is {server.limit} tokens. However, you requested "
                            f"{n + mt} tokens ({n} in the messages, {mt} in the completion). Please reduce the "
                            "length of the messages or completion.")})
                    if server.reply_check == "max_model_len" and mt > server.limit:
                        return self._send(400, {"error": {"message": (
                            f"max_tokens={mt} cannot be greater than max_model_len={server.limit}. Please request "
                            f"fewer output tokens. (parameter=max_tokens, value={mt})"),
                            "type": "BadRequestError", "param": "max_tokens", "code": 400}})
                msg = {"role": "assistant", "content": server.answer(body)}
                choice: dict[str, Any] = {"index": 0, "message": msg, "finish_reason": "stop", "logprobs": None}
                if body.get("logprobs") and server.logprobs:
                    top = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in server.top]
                    first = max(server.top, key=lambda t: t[1])
                    choice["logprobs"] = {"content": [{"token": first[0], "logprob": first[1], "top_logprobs": top}]}
                self._send(200, {"choices": [choice], "usage": {"prompt_tokens": n, "completion_tokens": 3}})

        return Handler
