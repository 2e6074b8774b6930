"""The shared cache/accounting/batching layer, driven through ScriptedLLM (a real LLM implementation)."""

from __future__ import annotations

import math
import threading

import pytest

from personalrewardbench.data.schema import Message
from personalrewardbench.llm import GenerationParams, ScriptedLLM
from personalrewardbench.llm.cache import RequestCache, request_key


def chat(text: str, system: str | None = None) -> list[Message]:
    return ([Message("system", system)] if system else []) + [Message("user", text)]


def echo(c, p) -> str:
    return "echo " + c[-1].content


def test_generate_in_order_and_accounted():
    llm = ScriptedLLM(echo, batch_size=2)
    out = llm.generate([chat("a b"), chat("c"), chat("d e f")])
    assert [c.text for c in out] == ["echo a b", "echo c", "echo d e f"]
    assert [c.prompt_tokens for c in out] == [2, 1, 3]
    assert llm.usage.calls == 3 and llm.usage.cache_hits == 0
    assert llm.usage.prompt_tokens == 6 and llm.usage.completion_tokens == 3 + 2 + 4
    assert llm.usage.seconds > 0


def test_cache_hits_and_identical_requests_computed_once(tmp_path):
    calls = []

    def counted(c, p):
        calls.append(c[-1].content)
        return "x"

    llm = ScriptedLLM(counted, use_cache=True, cache_dir=tmp_path)
    first = llm.generate([chat("same"), chat("same"), chat("other")])
    assert sorted(calls) == ["other", "same"]
    # the copy is answered by the first request of the call: it never reaches the model
    assert [c.cached for c in first] == [False, True, False] and [c.text for c in first] == ["x"] * 3
    assert llm.usage.cache_hits == 1 and llm.usage.calls == 3
    again = llm.generate([chat("same"), chat("new")])
    assert [c.cached for c in again] == [True, False]
    assert calls.count("same") == 1
    assert llm.usage.cache_hits == 2 and llm.usage.calls == 5


def test_cache_key_depends_on_identity_params_prompt_choices(tmp_path):
    base = request_key("m1", "generate", {"t": 0}, "p")
    assert base == request_key("m1", "generate", {"t": 0}, "p")
    assert len({base, request_key("m2", "generate", {"t": 0}, "p"), request_key("m1", "generate", {"t": 1}, "p"),
                request_key("m1", "generate", {"t": 0}, "q"), request_key("m1", "choice", {"t": 0}, "p", ["A"])}) == 5
    a = ScriptedLLM(lambda c, p: "from a", identity="a", use_cache=True, cache_dir=tmp_path)
    b = ScriptedLLM(lambda c, p: "from b", identity="b", use_cache=True, cache_dir=tmp_path)
    a.generate([chat("q")])
    assert b.generate([chat("q")])[0].text == "from b"
    assert a.generate([chat("q")], GenerationParams(max_tokens=5))[0].cached is False


def test_no_cache_writes_nothing(tmp_path):
    llm = ScriptedLLM(echo, use_cache=False, cache_dir=tmp_path / "c")
    llm.generate([chat("a")])
    assert llm.cache is None and not (tmp_path / "c").exists()


def test_choice_logprobs_and_failures_not_cached(tmp_path):
    def choose(c, choices):
        if "boom" in c[-1].content:
            raise RuntimeError("scripted failure")
        return {"A": math.log(0.75), "B": math.log(0.25)}

    llm = ScriptedLLM(choice_fn=choose, use_cache=True, cache_dir=tmp_path)
    out = llm.choice_logprobs([chat("fine"), chat("boom")], ["A", "B"])
    assert out[0] == pytest.approx({"A": math.log(0.75), "B": math.log(0.25)})
    assert out[1] == {}
    assert llm.usage.failed_requests == 1
    llm.choice_logprobs([chat("fine"), chat("boom")], ["A", "B"])
    assert llm.usage.cache_hits == 1 and llm.usage.failed_requests == 2


def test_generate_failure_is_counted():
    llm = ScriptedLLM(lambda c, p: 1 / 0)
    out = llm.generate([chat("x")])
    assert out[0].finish_reason == "error" and llm.usage.failed_requests == 1


def test_bad_choices_and_chats_rejected():
    llm = ScriptedLLM()
    with pytest.raises(ValueError, match="at least two"):
        llm.choice_logprobs([chat("x")], ["A"])
    with pytest.raises(ValueError, match="distinct"):
        llm.choice_logprobs([chat("x")], ["A", "A "])
    with pytest.raises(ValueError, match="empty chat"):
        llm.generate([[]])


def test_long_prompt_truncated_and_counted():
    seen = []
    llm = ScriptedLLM(lambda c, p: seen.append(c) or "ok", context_length=60)
    history = [Message("user" if i % 2 == 0 else "assistant", f"turn {i} " + "w " * 10) for i in range(8)]
    final = Message("user", "Response A: short one. Response B: another.")
    out = llm.generate([[Message("system", "judge well"), *history, final]], GenerationParams(max_tokens=10))
    assert out[0].prompt_truncated and llm.usage.truncated_prompts == 1
    sent = seen[0]
    assert sent[0].content == "judge well" and sent[-1] == final
    assert llm.count_tokens(sent) <= 50 and len(sent) < 10


def test_cache_is_thread_safe(tmp_path):
    llm = ScriptedLLM(echo, use_cache=True, cache_dir=tmp_path, batch_size=3)
    errors = []

    def work(k: int) -> None:
        try:
            out = llm.generate([chat(f"t{k} q{i}") for i in range(20)])
            assert [c.text for c in out] == [f"echo t{k} q{i}" for i in range(20)]
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(RequestCache(tmp_path)) == 80
    assert llm.usage.calls == 80
