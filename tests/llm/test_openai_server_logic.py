"""Pure logic of what servers say: refusal wordings, identities, log-probability conventions, estimates."""

from __future__ import annotations

import math

import pytest

from personalrewardbench.data.schema import Message
from personalrewardbench.llm.base import Usage, degraded_note
from personalrewardbench.llm.choices import clean_logprob, read_top_tokens, unlisted_bound
from personalrewardbench.llm.openai_server import (
    ContextRefusal,
    context_refusal,
    estimate_tokens,
    normalize_base_url,
    note_served_model,
    served_model,
)


@pytest.mark.parametrize(("status", "text", "want"), [
    # vLLM (renderers/params.py)
    (400, "This model's maximum context length is 2048 tokens. However, your prompt contains 3001 input tokens, "
          "which exceeds this limit even without any output tokens.", ContextRefusal(2048, 3001)),
    (400, "This model's maximum context length is 2048 tokens. However, your prompt contains at least 2049 input "
          "tokens", ContextRefusal(2048, 2049)),
    # vLLM's get_max_tokens
    (400, "Input length (5000) exceeds model's maximum context length (4096).", ContextRefusal(4096, 5000)),
    # OpenAI
    (400, "This model's maximum context length is 8192 tokens. However, you requested 10000 tokens (9000 in the "
          "messages, 1000 in the completion).", ContextRefusal(8192, 9000)),
    (400, "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.",
     ContextRefusal(8192, 9000)),
    # llama.cpp's server
    (400, '{"error":{"code":400,"message":"the request exceeds the available context size, try increasing it",'
          '"type":"exceed_context_size_error","n_prompt_tokens":5000,"n_ctx":4096}}', ContextRefusal(4096, 5000)),
    (400, "context length exceeded", ContextRefusal(None, None)),
    (400, "Requested sample logprobs of 20, which is greater than max allowed: 5", None),
    (401, "This model's maximum context length is 2048 tokens.", None),
    # TGI answers its input validation errors with 422 (red-team pass)
    # prompt and cap together, the prompt alone fitting: a reply-cap refusal (the backend keeps the prompt
    # when it fits what the limit leaves for the cap, else cuts it: 4000 > 4096 - 256, so it is cut)
    (422, "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 4000 `inputs` tokens "
          "and 256 `max_new_tokens`", ContextRefusal(4096, 4000, reply_cap=True)),
    (422, "Input validation error: `inputs` must have less than 2048 tokens. Given: 3000", ContextRefusal(2048, 3000)),
    (422, "Input validation error: `max_new_tokens` must be <= 1024. Given: 2048", None),  # not about the prompt
])
def test_context_refusal_wordings(status, text, want):
    assert context_refusal(status, text) == want


def test_identity_keeps_what_names_the_weights_and_drops_the_answer_time():
    now = 1_750_000_000.0
    vllm_entry = {"id": "judge", "object": "model", "created": int(now), "owned_by": "vllm", "root": "/m/qwen",
                  "parent": None, "max_model_len": 4096, "permission": [{"id": "modelperm-1a2b", "created": int(now)}]}
    m = served_model("HTTP://LocalHost:8000/v1/", "judge", vllm_entry, now=now)
    assert m.identity == "openai:judge@http://localhost:8000/v1|root=/m/qwen|max_model_len=4096|owned_by=vllm"
    hosted = {"id": "gpt-4o-mini", "created": 1_721_172_741, "owned_by": "system"}
    assert served_model("https://api.example.com/v1", "gpt-4o-mini", hosted, "2024-07-18", now=now).identity == (
        "openai:gpt-4o-mini@https://api.example.com/v1|created=1721172741|owned_by=system|revision=2024-07-18")
    llama = {"id": "m.gguf", "meta": {"n_params": 135000000, "n_ctx_train": 8192, "size": 100}}
    a = served_model("http://h:8080/v1", "m.gguf", llama, now=now)
    b = served_model("http://h:8080/v1", "m.gguf", {**llama, "meta": {**llama["meta"], "size": 101}}, now=now)
    assert a.identity != b.identity and "|meta=" in a.identity
    assert normalize_base_url("http://127.0.0.1:8000/v1//") == "http://127.0.0.1:8000/v1"


def test_served_model_record_warns_only_on_change(tmp_path):
    lines: list[str] = []
    a = served_model("http://h/v1", "judge", {"root": "/m/a"})
    assert not note_served_model(tmp_path, a, warn=lines.append)
    assert not note_served_model(tmp_path, a, warn=lines.append)
    assert note_served_model(tmp_path, served_model("http://h/v1", "judge", {"root": "/m/b"}), warn=lines.append)
    assert len(lines) == 1 and "root=/m/a" in lines[0] and "root=/m/b" in lines[0]
    assert not note_served_model(tmp_path, served_model("http://other/v1", "judge", {"root": "/m/c"}),
                                 warn=lines.append)  # another server: its own record
    (tmp_path / "served-models.json").write_text("not json")
    assert not note_served_model(tmp_path, a, warn=lines.append) and len(lines) == 1


def test_logprob_floor_nan_and_bounds():
    assert clean_logprob(-9999.0) == -math.inf and clean_logprob(float("nan")) == -math.inf
    assert clean_logprob(None) == -math.inf and clean_logprob("-0.5") == -0.5
    # min listed = log 0.05; mass left = 1 - 0.7 - 0.2 - 0.05 = 0.05
    assert unlisted_bound([math.log(0.7), math.log(0.2), math.log(0.05)]) == pytest.approx(math.log(0.05))
    # lowest listed 0.4, mass left 1 - 0.5 - 0.4 = 0.1: the bound is the smaller, 0.1
    assert unlisted_bound([math.log(0.5), math.log(0.4)]) == pytest.approx(math.log(0.1))


def test_read_top_tokens_conventions():
    assert read_top_tokens(["A", "B"], [("A", -9999.0), ("B", -9999.0), ("x", -0.1)]) is None
    assert read_top_tokens(["Response 1", "Response 2"], [("Response", -0.1)]) is None
    got = read_top_tokens(["A", "B"], [("A", math.log(0.6)), (" a", math.log(0.1)), ("x", math.log(0.2))])
    assert got is not None and got.unlisted == ("B",)
    assert got.logprobs["A"] == pytest.approx(math.log(0.7))
    assert got.logprobs["B"] == pytest.approx(math.log(0.1))  # min(0.1 listed, 1 - 0.9 left)
    both = read_top_tokens(["A", "B"], [("A", math.log(0.6)), ("B", math.log(0.3))])
    assert both is not None and both.unlisted == () and both.logprobs["B"] == pytest.approx(math.log(0.3))


def test_estimate_counts_every_non_ascii_byte():
    chat = [Message("user", "abcdef"), Message("assistant", "你好😊")]  # 6 ASCII; 3 + 3 + 4 bytes
    assert estimate_tokens(chat) == 16 + (2 + 8) + (10 + 8)


def test_usage_counts_per_kind_and_flat():
    u = Usage()
    u.add("choice", calls=3, choice_fallbacks=2, failed_requests=1)
    u.add("generate", calls=2, retries=4)
    assert (u.calls, u.choice_fallbacks, u.failed_requests, u.retries) == (5, 2, 1, 4)
    assert u.by_kind["choice"]["choice_fallbacks"] == 2 and u.by_kind["generate"]["retries"] == 4
    flat = u.counters()
    assert flat["choice_calls"] == 3 and flat["generate_calls"] == 2 and flat["calls"] == 5
    assert all(isinstance(v, int | float) for v in flat.values())
    assert u.as_dict()["by_kind"]["choice"]["failed_requests"] == 1
    assert degraded_note(flat) == ("LLM answers degraded: 2 choice fallbacks (greedy answers scored 0/1, not "
                                   "log-probabilities); 1 failed requests")
    assert degraded_note(Usage().counters()) is None
