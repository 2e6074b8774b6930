"""openai backend protocol logic (retries, backoff, fallback) against a small scripted HTTP server on loopback.

The real-server test is tests/llm/test_server.py; this one checks the unit logic fast.
"""

from __future__ import annotations

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from personalrewardbench.data.schema import Message
from personalrewardbench.llm import LLMError, make_llm


class Script:
    def __init__(self) -> None:
        self.fail_first = 0  # answer 503 to this many chat requests first
        self.logprobs = True
        self.requests: list[dict] = []
        self.lock = threading.Lock()


def make_handler(script: Script):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):  # quiet
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

        def do_GET(self):
            self._send(200, {"data": [{"id": "stub-model", "max_model_len": 512}]})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with script.lock:
                script.requests.append(body)
                if script.fail_first > 0:
                    script.fail_first -= 1
                    return self._send(503, {"error": "busy"}, {"Retry-After": "0"})
            last = body["messages"][-1]["content"]
            msg = {"role": "assistant", "content": f"I choose B. ({last})"}
            choice = {"index": 0, "message": msg, "finish_reason": "stop"}
            if body.get("logprobs") and script.logprobs:
                top = [{"token": "B", "logprob": math.log(0.6)}, {"token": " a", "logprob": math.log(0.1)},
                       {"token": "A", "logprob": math.log(0.2)}]
                choice["logprobs"] = {"content": [{"token": "B", "logprob": math.log(0.6), "top_logprobs": top}]}
            self._send(200, {"choices": [choice], "usage": {"prompt_tokens": 11, "completion_tokens": 3}})

    return Handler


@pytest.fixture
def server():
    script = Script()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(script))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", script, httpd
    httpd.shutdown()
    httpd.server_close()


def chats(n: int):
    return [[Message("user", f"q{i}")] for i in range(n)]


def test_generate_concurrent_in_order(server, tmp_path):
    url, script, _ = server
    llm = make_llm("openai", base_url=url, cache_dir=str(tmp_path), concurrency=3, batch_size=4)
    assert llm.identity == "openai:stub-model" and llm.context_length == 512
    out = llm.generate(chats(10))
    assert [c.text for c in out] == [f"I choose B. (q{i})" for i in range(10)]
    assert llm.usage.prompt_tokens == 110 and llm.usage.completion_tokens == 30
    assert len(script.requests) == 10
    assert all(r["model"] == "stub-model" for r in script.requests)
    llm.generate(chats(10))
    assert len(script.requests) == 10 and llm.usage.cache_hits == 10


def test_retries_with_backoff_on_5xx(server):
    url, script, _ = server
    script.fail_first = 3
    llm = make_llm("openai", base_url=url, use_cache=False, backoff_s=0.01)
    out = llm.generate(chats(1))
    assert out[0].text.startswith("I choose B") and len(script.requests) == 4


def test_gives_up_with_clear_error_keeping_finished_batches(server, tmp_path):
    url, script, httpd = server
    llm = make_llm("openai", base_url=url, cache_dir=str(tmp_path), backoff_s=0.01, max_retries=2, batch_size=2)
    llm.generate(chats(2))
    script.fail_first = 10**6
    t0 = time.monotonic()
    with pytest.raises(LLMError, match="failed after 2 retries"):
        llm.generate(chats(4))
    assert time.monotonic() - t0 < 10
    assert llm.usage.cache_hits == 2  # the first two were answered from the cache before the failure


def test_top_logprobs_choice_scoring(server):
    url, script, _ = server
    llm = make_llm("openai", base_url=url, use_cache=False)
    got = llm.choice_logprobs(chats(2), ["A", "B"])
    assert got[0]["A"] == pytest.approx(math.log(0.3)) and got[0]["B"] == pytest.approx(math.log(0.6))
    body = script.requests[0]
    assert body["max_tokens"] == 1 and body["logprobs"] is True and body["top_logprobs"] == 20


def test_fallback_without_logprobs(server):
    url, script, _ = server
    script.logprobs = False
    llm = make_llm("openai", base_url=url, use_cache=False)
    got = llm.choice_logprobs(chats(2), ["A", "B"])
    assert got == [{"A": -math.inf, "B": 0.0}] * 2
    assert llm.usage.extra["choice_fallback"] == 2
    n = len(script.requests)
    llm.choice_logprobs(chats(1), ["A", "B"])  # the server is known to give none: no logprob request
    assert len(script.requests) == n + 1 and not script.requests[-1].get("logprobs")


def test_unreachable_server_fails_fast():
    t0 = time.monotonic()
    with pytest.raises(LLMError, match="cannot reach the OpenAI-compatible server at http://127.0.0.1:9/v1"):
        make_llm("openai", base_url="http://127.0.0.1:9/v1", use_cache=False)
    assert time.monotonic() - t0 < 10
