"""The reply cap (``max_tokens``) against the context a server holds, with a fake server on 127.0.0.1.

The fake server counts prompts with the real SmolLM2 tokenizer (its chat template applied), as
vLLM does, and enforces its context limit on the prompt and on the reply cap with vLLM's and
OpenAI's wordings. Expected caps are the server's limit less the fake server's own count of
each prompt.
"""

from __future__ import annotations

import pytest

from personalrewardbench.data.schema import Message
from personalrewardbench.llm import GenerationParams, make_llm
from personalrewardbench.llm.openai_server import ContextRefusal, context_refusal

from .fake_server import FakeServer
from .test_openai_trust import smollm2_tokenizer  # noqa: F401 - a fixture

LIMIT = 256
CAP = 8192  # the reference SynthesizeMe's reply cap


def chats(n: int, words: int = 10) -> list[list[Message]]:
    return [[Message("system", "You judge two responses."), Message("user", f"Case {i}: " + "word " * words)]
            for i in range(n)]


def sent_caps(server: FakeServer) -> list[tuple[int, int]]:
    """(prompt tokens as the server counts them, max_tokens) of every chat request it received."""
    return [(server.prompt_tokens(r["messages"]), r["max_tokens"]) for r in server.chat_requests()]


@pytest.mark.parametrize("rule", ["sum", "max_model_len"])
def test_reply_cap_is_clamped_to_what_the_reported_context_leaves(smollm2_tokenizer, tmp_path, rule):  # noqa: F811
    tok, _ = smollm2_tokenizer
    with FakeServer("smollm2", max_model_len=LIMIT, tokenizer=tok, limit=LIMIT) as s:
        s.reply_check = rule
        llm = make_llm("openai", base_url=s.url, cache_dir=str(tmp_path))
        out = llm.generate(chats(3), GenerationParams(max_tokens=CAP))
        assert all(c.finish_reason == "stop" and c.text.startswith("I choose B") for c in out)
        caps = sent_caps(s)
        assert len(caps) == 3 and all(cap == LIMIT - n for n, cap in caps)  # no request refused, none resent
        u = llm.usage
        assert (u.refused_requests, u.failed_requests, u.truncated_prompts, u.retries) == (0, 0, 0, 0)
        assert u.clamped_max_tokens == 3 and u.by_kind["generate"]["clamped_max_tokens"] == 3
        assert u.counters()["generate_clamped_max_tokens"] == 3
        llm.generate(chats(2, words=3), GenerationParams(max_tokens=8))  # a cap that fits is sent as asked
        assert [cap for _, cap in sent_caps(s)[3:]] == [8, 8] and llm.usage.clamped_max_tokens == 3


def test_a_long_prompt_is_fitted_so_the_reply_keeps_half_the_context(smollm2_tokenizer, tmp_path):  # noqa: F811
    tok, _ = smollm2_tokenizer
    with FakeServer("smollm2", max_model_len=LIMIT, tokenizer=tok, limit=LIMIT) as s:
        s.reply_check = "sum"
        llm = make_llm("openai", base_url=s.url, cache_dir=str(tmp_path))
        long = chats(1, words=400)[0]
        assert s.prompt_tokens([{"role": m.role, "content": m.content} for m in long]) > LIMIT
        out = llm.generate([long], GenerationParams(max_tokens=CAP))[0]
        assert out.prompt_truncated and out.finish_reason == "stop"
        [(n, cap)] = sent_caps(s)
        assert n <= LIMIT // 2 and cap == LIMIT - n and cap >= LIMIT // 2  # a cap beyond the context: half each
        assert (llm.usage.refused_requests, llm.usage.truncated_prompts, llm.usage.clamped_max_tokens) == (0, 1, 1)


@pytest.mark.parametrize("rule", ["sum", "max_model_len"])
def test_a_server_smaller_than_reported_refuses_the_cap_once_then_it_is_learned(smollm2_tokenizer, tmp_path,  # noqa: F811
                                                                                 rule):
    tok, _ = smollm2_tokenizer
    # /v1/models says 8192 (or a user passed --max-model-len 8192); the server holds 256
    with FakeServer("smollm2", max_model_len=8192, tokenizer=tok, limit=LIMIT) as s:
        s.reply_check = rule
        llm = make_llm("openai", base_url=s.url, cache_dir=str(tmp_path), batch_size=2)
        out = llm.generate(chats(4), GenerationParams(max_tokens=CAP))
        assert all(c.finish_reason == "stop" for c in out)
        caps = sent_caps(s)
        # the first batch of 2: each refused once (its prompt is not cut), then sent with the cap that fits;
        # the second batch is sent with that cap at once
        assert len(caps) == 6 and [cap for _, cap in caps[2:]] == [LIMIT - n for n, _ in caps[2:]]
        assert all(cap > LIMIT - n for n, cap in caps[:2])
        u = llm.usage
        assert (u.refused_requests, u.retries, u.failed_requests, u.truncated_prompts) == (2, 2, 0, 0)
        assert u.clamped_max_tokens == 4


@pytest.mark.parametrize(("text", "want"), [
    # vLLM >= 0.11 (renderers/params.py): the cap alone is checked against the context
    ("max_tokens=9000 cannot be greater than max_model_len=8192. Please request fewer output tokens. "
     "(parameter=max_tokens, value=9000)", ContextRefusal(8192, None, reply_cap=True)),
    # vLLM 0.8-0.10 (get_max_tokens)
    ("'max_tokens' or 'max_completion_tokens' is too large: 8192. This model's maximum context length is 8192 "
     "tokens and your request has 51 input tokens (8192 > 8192 - 51).", ContextRefusal(8192, 51, reply_cap=True)),
    # OpenAI and vLLM <= 0.7: prompt and cap together; the prompt alone fits
    ("This model's maximum context length is 4096 tokens. However, you requested 8292 tokens (100 in the "
     "messages, 8192 in the completion). Please reduce the length of the messages or completion.",
     ContextRefusal(4096, 100, reply_cap=True)),
    # the same wording when the prompt alone does not fit: a prompt refusal
    ("This model's maximum context length is 4096 tokens. However, you requested 9192 tokens (5000 in the "
     "messages, 4192 in the completion).", ContextRefusal(4096, 5000)),
    # OpenAI's output cap
    ("max_tokens is too large: 10000. This model supports at most 4096 completion tokens, whereas you provided "
     "10000.", ContextRefusal(None, None, reply_cap=True, reply_limit=4096)),
])
def test_reply_cap_refusal_wordings(text, want):
    assert context_refusal(400, text) == want


def test_an_output_cap_refusal_lowers_later_caps(tmp_path):
    with FakeServer("hosted", max_model_len=None) as s:  # a hosted API: no context reported, an output cap
        s.status_for = lambda body: 400 if body.get("max_tokens", 0) > 100 else None
        s.status_message = lambda body: (f"max_tokens is too large: {body['max_tokens']}. This model supports at "
                                         f"most 100 completion tokens, whereas you provided {body['max_tokens']}.")
        llm = make_llm("openai", base_url=s.url, use_cache=False)
        out = llm.generate(chats(2), GenerationParams(max_tokens=1000))
        assert all(c.text.startswith("I choose B") for c in out)
        assert [r["max_tokens"] for r in s.chat_requests()] == [1000, 1000, 100, 100]
        llm.generate(chats(1, words=2), GenerationParams(max_tokens=1000))
        assert s.chat_requests()[-1]["max_tokens"] == 100
        u = llm.usage
        assert (u.refused_requests, u.retries, u.failed_requests, u.clamped_max_tokens) == (2, 2, 0, 3)
