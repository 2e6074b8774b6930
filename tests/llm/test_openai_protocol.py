"""openai backend protocol logic (retries, backoff, fallback) against a small scripted HTTP server on loopback.

The real-server test is tests/llm/test_server.py; this one checks the unit logic fast.
"""

from __future__ import annotations

import math
import time

import pytest

from personalrewardbench.data.schema import Message
from personalrewardbench.llm import LLMError, make_llm

from .fake_server import FakeServer


@pytest.fixture
def server():
    with FakeServer() as fake:
        yield fake.url, fake, None


def chats(n: int):
    return [[Message("user", f"q{i}")] for i in range(n)]


def test_generate_concurrent_in_order(server, tmp_path):
    url, script, _ = server
    llm = make_llm("openai", base_url=url, cache_dir=str(tmp_path), concurrency=3, batch_size=4)
    assert llm.identity == f"openai:stub-model@{url}|max_model_len=512|owned_by=vllm" and llm.context_length == 512
    out = llm.generate(chats(10))
    assert [c.text for c in out] == [f"I choose B. (q{i})" for i in range(10)]
    assert llm.usage.prompt_tokens == 10 and llm.usage.completion_tokens == 30  # 1 word a prompt, 3 tokens an answer
    assert len(script.chat_requests()) == 10
    assert all(r["model"] == "stub-model" for r in script.chat_requests())
    llm.generate(chats(10))
    assert len(script.chat_requests()) == 10 and llm.usage.cache_hits == 10


def test_retries_with_backoff_on_5xx(server):
    url, script, _ = server
    script.fail_first = 3
    llm = make_llm("openai", base_url=url, use_cache=False, backoff_s=0.01)
    out = llm.generate(chats(1))
    assert out[0].text.startswith("I choose B") and len(script.chat_requests()) == 4
    assert llm.usage.retries == 3 and llm.usage.by_kind["generate"]["retries"] == 3


def test_a_reply_slower_than_the_read_timeout_is_asked_again_with_a_longer_one(server):
    url, script, _ = server
    script.delay_s = 0.6  # every reply takes 0.6 s: a 0.4 s read timeout alone would never see one
    llm = make_llm("openai", base_url=url, use_cache=False, timeout=0.4, backoff_s=0.01, max_retries=2)
    out = llm.generate(chats(1))
    assert out[0].text.startswith("I choose B")
    assert len(script.chat_requests()) == 2 and llm.usage.retries == 1  # 0.4 s timed out, 0.8 s did not


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
    body = script.chat_requests()[0]
    assert body["max_tokens"] == 1 and body["logprobs"] is True and body["top_logprobs"] == 20


def test_fallback_without_logprobs(server):
    url, script, _ = server
    script.logprobs = False
    llm = make_llm("openai", base_url=url, use_cache=False)
    got = llm.choice_logprobs(chats(2), ["A", "B"])
    assert got == [{"A": -math.inf, "B": 0.0}] * 2
    assert llm.usage.choice_fallbacks == 2 and llm.usage.by_kind["choice"]["choice_fallbacks"] == 2
    assert llm.usage.by_kind["generate"]["calls"] == 2  # the greedy answers are generate requests of their own
    n = len(script.chat_requests())
    llm.choice_logprobs(chats(3), ["A", "B"])  # the server gave none: only the first request asks again
    asked = script.chat_requests()[n:]
    assert [bool(r.get("logprobs")) for r in asked] == [True, False, False, False]


def test_unreachable_server_fails_fast():
    t0 = time.monotonic()
    with pytest.raises(LLMError, match="cannot reach the OpenAI-compatible server at http://127.0.0.1:9/v1"):
        make_llm("openai", base_url="http://127.0.0.1:9/v1", use_cache=False)
    assert time.monotonic() - t0 < 10


def test_a_deadline_cancels_requests_to_a_slow_server(server):
    import threading

    from personalrewardbench.llm.base import DeadlineExceeded, deadline_scope

    url, script, _ = server
    release = threading.Event()
    script.answer = lambda body: "late" if release.wait(30) else "late"  # 30 s per answer; the timeout is 120 s
    llm = make_llm("openai", base_url=url, use_cache=False)
    try:
        t0 = time.monotonic()
        with deadline_scope(t0 + 1.0), pytest.raises(DeadlineExceeded):
            llm.generate(chats(3))
        assert time.monotonic() - t0 < 1.0 + 0.5
    finally:
        release.set()
    script.answer = lambda body: "on time"
    assert llm.generate(chats(1))[0].text == "on time"  # the backend is still usable afterwards
