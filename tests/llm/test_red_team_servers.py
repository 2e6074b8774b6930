"""The openai backend against lying and broken servers it had not met (a red-team pass after issue 14).

Every server is a scripted one on 127.0.0.1 (``red_server.Scripted``). Expected values are by hand
from what the server says: with log-probabilities lp, p(First) = e^lp_First / (e^lp_First +
e^lp_Second); the healthy answer below lists First 0.6 and Second 0.2, so p(First) = 0.75. A
greedy fallback answer "First" scores {First: 0, Second: -inf}, p = 1.
"""

from __future__ import annotations

import json
import math
import threading
import time

import pytest

from personalrewardbench.data.schema import Message
from personalrewardbench.llm import LLMError, make_llm
from personalrewardbench.llm.base import GenerationParams

from .red_server import Reply, Scripted, chat_answer, free_port, log, models

CHOICES = ["First", "Second"]
GOOD = chat_answer([("First", log(0.6)), ("Second", log(0.2)), ("The", log(0.1))])
FAST = {"backoff_s": 0.01, "max_retries": 1, "timeout": 10.0, "connect_timeout": 5.0, "progress": False}
SHORT = {**FAST, "timeout": 3.0}  # for servers that hang: healthy answers take milliseconds (seconds on a
# loaded 2-core CI machine, hence 3 s, far below the hanging server's 30 s)


def p_first(lp: dict[str, float]) -> float | None:
    if not lp:
        return None
    a, b = math.exp(lp["First"]), math.exp(lp["Second"])
    return a / (a + b)


def judge(i: int, extra: str = "") -> list[Message]:
    return [Message("system", "Answer First or Second."), Message("user", f"Q{i}: which is better? {extra}".strip())]


def _words(body: dict) -> int:
    return sum(len(m["content"].split()) for m in body["messages"]) + 4


def server(special=None, entry: dict | None = None, tokenize=None):
    """A judge server: ``special(request, last_user_text)`` may replace the healthy answer."""

    def handle(req: dict) -> Reply:
        if req["path"].rstrip("/").endswith("/models"):
            return Reply(body=models(entry or {"id": "judge", "object": "model", "max_model_len": 4096}))
        if req["path"] == "/tokenize":
            return tokenize(req) if tokenize else Reply(404, {"detail": "Not Found"})
        text = req["body"]["messages"][-1]["content"]
        out = special(req, text) if special else None
        # the healthy answer, with the server's own prompt count (a token a word, as the refusals below count)
        return out if out is not None else Reply(body={**GOOD, "usage": {"prompt_tokens": _words(req["body"]),
                                                                         "completion_tokens": 1}})

    return handle


def within(seconds: float, fn):
    """Run ``fn`` in a thread; its result, or a test failure if it is still running after ``seconds``."""
    box: dict = {}

    def go() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still running after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


# ----------------------------------------------------------------------------- numbers that are no log-probabilities

@pytest.mark.parametrize("top", [
    [("First", 0.8), ("Second", 0.2)],  # probabilities in the logprob field: read as 0 and 0, a fake tie
    [("First", 12.0), ("Second", 9.0)],  # raw logits
    [("First", float("inf")), ("Second", log(0.5))],  # +Infinity (Python's json writes and reads it)
    [("First", 0.7), ("Second", log(0.3))],  # a positive "log-probability"
    [("First", log(0.9)), ("Second", log(0.9))],  # listed probabilities summing to 1.8
    [("First", "-0.1"), ("Second", "abc")],  # strings
    [("First", float("nan")), ("Second", log(0.3)), ("The", log(0.5))],  # NaN: read as -inf, p(First)=0 certain
], ids=["probabilities", "logits", "plus-inf", "positive", "sum-1.8", "strings", "nan"])
def test_a_list_that_is_not_log_probabilities_is_no_information(top):
    # the greedy answer says Second, so a fallback is told apart from any reading of the junk list
    with Scripted(server(lambda req, t: Reply(body=chat_answer(top, "Second")) if req["body"].get("logprobs")
                         else Reply(body=chat_answer(None, "Second")))) as s:
        llm = make_llm("openai", base_url=s.url, use_cache=False, **FAST)
        got = llm.choice_logprobs([judge(0)], CHOICES)
        assert got == [{"First": -math.inf, "Second": 0.0}]
        assert llm.usage.choice_fallbacks == 1 and llm.usage.unlisted_choices == 0


@pytest.mark.parametrize("shape", ["dict", "completions"])
def test_top_logprobs_in_the_token_to_logprob_form_are_read(shape):
    # {"First": lp, ...} instead of [{"token", "logprob"}], as the completions endpoint writes it
    top = {"First": log(0.6), "Second": log(0.2), "The": log(0.1)}
    logprobs = ({"content": [{"token": "First", "logprob": log(0.6), "top_logprobs": top}]} if shape == "dict"
                else {"tokens": ["First"], "token_logprobs": [log(0.6)], "top_logprobs": [top]})
    answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "First"}, "finish_reason": "stop",
                           "logprobs": logprobs}]}
    with Scripted(server(lambda req, t: Reply(body=answer))) as s:
        llm = make_llm("openai", base_url=s.url, use_cache=False, **FAST)
        got = llm.choice_logprobs([judge(0)], CHOICES)
        assert p_first(got[0]) == pytest.approx(0.75) and llm.usage.unlisted_choices == 0


def test_a_choice_listed_with_probability_one_is_no_tie():
    # no alternatives listed, the answer token First at logprob 0.0 (OpenAI rounds near-certain tokens to 0):
    # Second has at most the mass the list leaves (none, up to rounding: <= 2%), so p(First) is ~1, not 0.5
    with Scripted(server(lambda req, t: Reply(body=chat_answer([], "First")))) as s:
        llm = make_llm("openai", base_url=s.url, use_cache=False, **FAST)
        got = llm.choice_logprobs([judge(0)], CHOICES)
        assert p_first(got[0]) > 0.95 and llm.usage.unlisted_choices == 1


@pytest.mark.parametrize("marker", ["\u0120", "\u2581"])  # GPT-2 byte-level "Ġ", SentencePiece "▁": a leading space
def test_raw_token_space_markers_count_for_the_choice(marker):
    top = [("First", log(0.3)), (marker + "Second", log(0.6)), ("The", log(0.05))]
    with Scripted(server(lambda req, t: Reply(body=chat_answer(top)))) as s:
        llm = make_llm("openai", base_url=s.url, use_cache=False, **FAST)
        got = llm.choice_logprobs([judge(0)], CHOICES)
        assert p_first(got[0]) == pytest.approx(0.3 / 0.9)  # not 0.75 from an upper bound for "missing" Second
        assert llm.usage.unlisted_choices == 0


# ----------------------------------------------------------------------------- answers that are no answers

@pytest.mark.parametrize("bad", [
    Reply(body={"error": {"message": "upstream overloaded", "type": "server_error", "code": 503}}),  # proxies
    Reply(body={"id": "x", "object": "chat.completion", "choices": []}),
    Reply(body=[1, 2, 3]),
    Reply(body=b"data: {\"choices\": []}\n\ndata: [DONE]\n\n", content_type="text/event-stream"),  # stream only
    Reply(body=b"{\"choices\": [", content_type="application/json"),  # invalid JSON
], ids=["error-object", "no-choices", "json-list", "sse", "invalid-json"])
def test_a_200_without_an_answer_fails_that_request_and_latches_nothing(bad):
    bad_first = lambda req, t: bad if "BAD" in t else None  # noqa: E731
    with Scripted(server(bad_first)) as s:
        llm = make_llm("openai", base_url=s.url, use_cache=False, batch_size=2, **FAST)
        chats = [judge(i, "BAD " + "long " * 20) for i in range(2)] + [judge(i) for i in range(2, 6)]
        got = llm.choice_logprobs(chats, CHOICES)  # longest first: the two BAD ones are the first batch
        assert got[:2] == [{}, {}]  # failed, not a greedy 0/1 guess
        assert [p_first(g) for g in got[2:]] == pytest.approx([0.75] * 4)  # real log-probs, no latch
        u = llm.usage
        assert (u.choice_fallbacks, u.refused_requests) == (0, 0)  # a 200 is no HTTP refusal
        assert u.by_kind["choice"]["failed_requests"] == 2
        judged = [r for r in s.chats() if r["messages"][-1]["content"].startswith("Q")]  # not a health probe
        assert len(judged) == 6 and all(r.get("logprobs") for r in judged)  # nothing fell back to greedy answers


FAILED = {}
FALLBACK_FIRST = {"First": 0.0, "Second": -math.inf}


@pytest.mark.parametrize(("bad", "expected"), [
    ({"choices": [{"index": 0, "message": "First", "finish_reason": "stop"}]}, [FAILED]),  # message a string
    ({"choices": ["First"]}, [FAILED]),
    ({**GOOD, "usage": "lots"}, [0.75]),  # junk usage says nothing about the log-probabilities
    ({**GOOD, "usage": [1]}, [0.75]),
    ({**GOOD, "usage": {"prompt_tokens": "many", "completion_tokens": None}}, [0.75]),
    ({"choices": [{"index": 0, "message": {"role": "assistant", "content": "First"}, "finish_reason": "stop",
                   "logprobs": {"content": "First"}}]}, [FAILED, FALLBACK_FIRST]),  # unreadable log-probs
], ids=["message-str", "choice-str", "usage-str", "usage-list", "usage-junk", "content-str"])
def test_malformed_fields_never_raise_a_traceback(bad, expected):
    with Scripted(server(lambda req, t: Reply(body=bad) if "BAD" in t else None)) as s:
        llm = make_llm("openai", base_url=s.url, use_cache=False, **FAST)
        got = llm.choice_logprobs([judge(0, "BAD"), judge(1)], CHOICES)
        assert p_first(got[1]) == pytest.approx(0.75)
        assert any(got[0] == e if isinstance(e, dict) else p_first(got[0]) == pytest.approx(e) for e in expected)
        out = llm.generate([judge(2, "BAD")], GenerationParams(max_tokens=8))
        assert out[0].finish_reason == ("error" if expected == [FAILED] else "stop")


@pytest.mark.parametrize("choice", [
    {"index": 0, "message": {"role": "assistant", "content": None}, "finish_reason": "stop"},
    {"index": 0, "message": {"role": "assistant", "content": None, "reasoning_content": "hmm"},
     "finish_reason": "length"},
    {"index": 0, "finish_reason": "stop"},
    {"index": 0, "message": {"role": "assistant", "content": "Fi"}, "finish_reason": "abort"},  # vLLM: aborted
    {"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "error"},
], ids=["content-null", "reasoning-only", "no-message", "abort", "error"])
def test_a_generation_without_text_is_a_failure_never_cached(tmp_path, choice):
    with Scripted(server(lambda req, t: Reply(body={"choices": [choice]}))) as s:
        llm = make_llm("openai", base_url=s.url, cache_dir=str(tmp_path), **FAST)
        out = llm.generate([judge(0)], GenerationParams(max_tokens=8))
        assert out[0].finish_reason == "error" and llm.usage.failed_requests == 1
        again = make_llm("openai", base_url=s.url, cache_dir=str(tmp_path), **FAST)
        again.generate([judge(0)], GenerationParams(max_tokens=8))
        assert again.usage.cache_hits == 0 and len(s.chats()) == 2  # asked again


def test_completions_style_text_and_the_index_0_choice_are_read():
    answers = {"text": {"choices": [{"index": 0, "text": "First", "finish_reason": "stop"}]},
               "index": {"choices": [{"index": 1, "message": {"role": "assistant", "content": "Second"},
                                      "finish_reason": "stop"},
                                     {"index": 0, "message": {"role": "assistant", "content": "First"},
                                      "finish_reason": "stop"}]}}
    with Scripted(server(lambda req, t: Reply(body=answers[t.split()[-1]]))) as s:
        llm = make_llm("openai", base_url=s.url, use_cache=False, **FAST)
        out = llm.generate([judge(0, "text"), judge(1, "index")], GenerationParams(max_tokens=8))
        assert [o.text for o in out] == ["First", "First"] and llm.usage.failed_requests == 0


# ----------------------------------------------------------------------------- transport faults

def test_a_server_that_only_streams_is_one_clear_error():
    sse = Reply(body=b"data: " + json.dumps(GOOD).encode() + b"\n\ndata: [DONE]\n\n", content_type="text/event-stream")
    with Scripted(server(lambda req, t: sse)) as s:
        llm = make_llm("openai", base_url=s.url, use_cache=False, **FAST)
        with pytest.raises(LLMError, match="not JSON"):
            llm.choice_logprobs([judge(i) for i in range(3)], CHOICES)


def test_a_gzip_header_over_garbage_fails_that_request():
    bad = Reply(body=b"this is not gzip", headers={"Content-Encoding": "gzip"})
    with Scripted(server(lambda req, t: bad if "BAD" in t else None)) as s:
        llm = make_llm("openai", base_url=s.url, use_cache=False, **FAST)
        got = llm.choice_logprobs([judge(0, "BAD"), judge(1), judge(2)], CHOICES)
        assert got[0] == {} and [p_first(g) for g in got[1:]] == pytest.approx([0.75, 0.75])
        assert llm.usage.failed_requests == 1


@pytest.mark.parametrize("bad", [Reply(500, {"error": "boom"}), Reply(mode="reset"), Reply(body=GOOD, mode="close_mid"),
                                 Reply(body=GOOD, mode="hang")], ids=["500", "reset", "close-mid-body", "hang"])
def test_one_poison_prompt_fails_alone_and_the_run_finishes(tmp_path, bad):
    # the BAD prompt always breaks, and is the shortest, so it is alone in the last batch
    with Scripted(server(lambda req, t: bad if "BAD" in t else None)) as s:
        chats = [judge(i, "some longer text " * 5) for i in range(4)] + [judge(9, "BAD")]
        opts = {**SHORT, "max_retries": 0}
        llm = make_llm("openai", base_url=s.url, cache_dir=str(tmp_path), batch_size=4, **opts)
        got = within(20, lambda: llm.choice_logprobs(chats, CHOICES))
        assert got[4] == {} and [p_first(g) for g in got[:4]] == pytest.approx([0.75] * 4)
        assert llm.usage.failed_requests == 1
        again = make_llm("openai", base_url=s.url, cache_dir=str(tmp_path), batch_size=4, **opts)
        within(20, lambda: again.choice_logprobs(chats, CHOICES))
        assert again.usage.cache_hits == 4  # the rerun asks only the failed one again


def test_a_poison_prompt_inside_a_batch_does_not_lose_the_others(tmp_path):
    bad = Reply(body=GOOD, mode="hang")
    with Scripted(server(lambda req, t: bad if "BAD" in t else None)) as s:
        llm = make_llm("openai", base_url=s.url, cache_dir=str(tmp_path), batch_size=4, **SHORT)
        got = within(20, lambda: llm.choice_logprobs([judge(0, "BAD"), judge(1), judge(2), judge(3)], CHOICES))
        assert got[0] == {} and [p_first(g) for g in got[1:]] == pytest.approx([0.75] * 3)


def test_a_body_that_never_ends_is_cut_at_the_timeout():
    # headers, then one blank byte every 50 ms: each read succeeds, so a per-read timeout never fires
    with Scripted(server(lambda req, t: Reply(mode="trickle") if "BAD" in t else None)) as s:
        llm = make_llm("openai", base_url=s.url, use_cache=False, **{**SHORT, "max_retries": 0})
        t0 = time.monotonic()
        got = within(15, lambda: llm.choice_logprobs([judge(0, "BAD"), judge(1)], CHOICES))
        assert time.monotonic() - t0 < 12  # one 3 s deadline, not the server's 30 s
        assert got[0] == {} and p_first(got[1]) == pytest.approx(0.75) and llm.usage.failed_requests == 1


def test_a_retry_after_beyond_any_wait_is_not_waited_out():
    # a daily quota: "retry after a day"; the request fails now (counted), it is not slept on
    bad = Reply(429, {"error": {"message": "quota exceeded"}}, headers={"Retry-After": "86400"})
    with Scripted(server(lambda req, t: bad if "BAD" in t else None)) as s:
        llm = make_llm("openai", base_url=s.url, use_cache=False, **{**FAST, "max_retries": 3})
        t0 = time.monotonic()
        got = within(30, lambda: llm.choice_logprobs([judge(0, "BAD"), judge(1)], CHOICES))
        assert time.monotonic() - t0 < 5
        assert got[0] == {} and p_first(got[1]) == pytest.approx(0.75) and llm.usage.failed_requests == 1


def test_a_redirected_api_is_followed():
    def handle(req: dict) -> Reply:
        if req["path"].startswith("/v1/"):  # moved behind a proxy prefix
            return Reply(308, b"", headers={"Location": "/api" + req["path"]})
        return server()({**req, "path": req["path"].removeprefix("/api")})

    with Scripted(handle) as s:
        llm = make_llm("openai", base_url=s.url, use_cache=False, **FAST)
        assert "max_model_len=4096" in llm.identity
        got = llm.choice_logprobs([judge(0)], CHOICES)
        assert p_first(got[0]) == pytest.approx(0.75) and llm.usage.failed_requests == 0


def test_a_server_that_caps_top_logprobs_is_asked_again_within_its_cap():
    # vLLM --max-logprobs 5 (and several hosted APIs) refuse top_logprobs=20
    def special(req: dict, t: str) -> Reply | None:
        k = req["body"].get("top_logprobs") or 0
        if k > 5:
            return Reply(400, {"object": "error", "type": "BadRequestError", "code": 400,
                               "message": f"Requested sample logprobs of {k}, which is greater than max allowed: 5"})
        return None

    with Scripted(server(special)) as s:
        llm = make_llm("openai", base_url=s.url, use_cache=False, batch_size=2, **FAST)
        got = llm.choice_logprobs([judge(i) for i in range(4)], CHOICES)
        assert [p_first(g) for g in got] == pytest.approx([0.75] * 4) and llm.usage.failed_requests == 0
        assert all(r["top_logprobs"] <= 5 for r in s.chats()[-2:])  # the second batch asks within the cap


# ----------------------------------------------------------------------------- context-length refusals

REFUSALS = {  # (status, body) for a prompt of n tokens (here: words) over a limit lim
    "tgi-422": lambda lim, n: (422, {"error": f"Input validation error: `inputs` tokens + `max_new_tokens` must be "
                                            f"<= {lim}. Given: {n} `inputs` tokens and 1 `max_new_tokens`",
                                   "error_type": "validation"}),
    "tgi-400": lambda lim, n: (400, {"error": f"Input validation error: `inputs` must have less than {lim} tokens. "
                                            f"Given: {n}", "error_type": "validation"}),
    "too-long-n>l": lambda lim, n: (400, {"error": {"message": f"prompt is too long: {n} tokens > {lim} maximum"}}),
    "mistral": lambda lim, n: (400, {"object": "error", "message": f"Prompt contains {n} tokens, too large for model "
                                                                 f"with {lim} maximum context length"}),
    "llamacpp-old": lambda lim, n: (400, {"error": {"code": 400, "type": "invalid_request_error", "message":
                                                  "the request exceeds the available context size, try increasing "
                                                  "the context size or enable context shift"}}),
}


@pytest.mark.parametrize("wording", sorted(REFUSALS))
def test_context_refusals_in_other_wordings_are_refitted(wording):
    limit = 2048  # the server counts a token a word; /v1/models says 4096

    def special(req: dict, t: str) -> Reply | None:
        n = _words(req["body"])
        if n > limit:
            status, body = REFUSALS[wording](limit, n)
            return Reply(status, body)
        return None

    with Scripted(server(special)) as s:
        llm = make_llm("openai", base_url=s.url, use_cache=False, **FAST)
        got = llm.choice_logprobs([judge(0, "w " * 3000)], CHOICES)
        assert p_first(got[0]) == pytest.approx(0.75)
        u = llm.usage
        assert (u.refused_requests, u.truncated_prompts, u.failed_requests) == (1, 1, 0)
        assert _words(s.chats()[-1]) <= limit


def test_one_refusal_stating_a_limit_below_answered_prompts_latches_nothing(tmp_path):
    lie = Reply(400, {"object": "error", "message": "This model's maximum context length is 64 tokens. However, "
                                                    "your prompt contains 900 input tokens."})
    with Scripted(server(lambda req, t: lie if "ODD" in t else None)) as s:
        llm = make_llm("openai", base_url=s.url, cache_dir=str(tmp_path), batch_size=1, **FAST)
        first = llm.choice_logprobs([judge(0, "word " * 300)], CHOICES)  # 300 words answered in full
        llm.choice_logprobs([judge(1, "ODD " + "word " * 300)], CHOICES)  # one odd refusal: "64 tokens"
        third = llm.choice_logprobs([judge(2, "word " * 300)], CHOICES)
        assert p_first(first[0]) == pytest.approx(0.75) and p_first(third[0]) == pytest.approx(0.75)
        assert len(s.chats()[-1]["messages"][-1]["content"].split()) > 300  # sent whole, not cut to 64 tokens
        assert llm.usage.by_kind["choice"]["truncated_prompts"] <= 1  # at most the odd one


# ----------------------------------------------------------------------------- token counts

@pytest.mark.parametrize("count", [0, -5, "77", None])
def test_tokenize_counts_that_cannot_be_counts_are_not_used(count):
    limit = 2048

    def special(req: dict, t: str) -> Reply | None:
        n = _words(req["body"])
        if n > limit:
            return Reply(400, {"object": "error", "message": f"This model's maximum context length is {limit} "
                                                             f"tokens. However, your prompt contains {n} input tokens."})
        return None

    with Scripted(server(special, tokenize=lambda req: Reply(body={"count": count, "max_model_len": 4096}))) as s:
        llm = make_llm("openai", base_url=s.url, use_cache=False, **FAST)
        assert llm.count_tokens(judge(0, "w " * 3000)) > 1000
        got = llm.choice_logprobs([judge(0, "w " * 3000)], CHOICES)
        assert p_first(got[0]) == pytest.approx(0.75) and llm.usage.failed_requests == 0


def test_a_tokenize_endpoint_that_starts_hanging_costs_one_timeout():
    def tokenize(req: dict) -> Reply:
        if req["body"]["messages"][-1]["content"] == "hi":  # the probe is answered, then it hangs
            return Reply(body={"count": 5, "max_model_len": 4096})
        return Reply(body={"count": 5}, mode="hang")

    with Scripted(server(tokenize=tokenize, entry={"id": "judge", "max_model_len": 512})) as s:
        llm = make_llm("openai", base_url=s.url, use_cache=False, **SHORT)
        assert llm.tokens.source == "server"
        t0 = time.monotonic()
        # a long chat makes the fitting count many trial prompts
        got = within(60, lambda: llm.choice_logprobs([judge(0, "w " * 3000)] + [judge(i) for i in range(1, 6)],
                                                     CHOICES))
        assert time.monotonic() - t0 < 12  # one 3 s timeout, not one per trial prompt (dozens of them)
        assert [p_first(g) for g in got] == pytest.approx([0.75] * 6)


@pytest.fixture(scope="module")
def smollm2():
    from transformers import AutoTokenizer

    from personalrewardbench.llm.model_files import embedded_gguf_path, file_sha256, model_cache_dir

    gguf = embedded_gguf_path()
    converted = model_cache_dir() / f"{gguf.stem}-{file_sha256(gguf)[:16]}"
    if (converted / "tokenizer.json").exists():
        return AutoTokenizer.from_pretrained(str(converted))
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


TEXTS = {"digits": " ".join(str(i) for i in range(300)),
         "hex": "".join(f"{i * 2654435761 % 2 ** 32:08x}" for i in range(100)),
         "code": "def f(x):\n    return x**2 + {'k': [1,2,3]}\n" * 40,
         "json": '{"user_id": 12345, "score": 0.987, "tags": ["a", "b"]}\n' * 30,
         "combining": "e\u0301a\u0308o\u0302" * 100}


@pytest.mark.parametrize("kind", sorted(TEXTS))
def test_the_estimate_fits_digits_and_code_under_a_silent_server(smollm2, kind):
    # no /tokenize, no local tokenizer: the estimate decides; the server truncates silently (as Ollama does),
    # so nothing but a conservative estimate keeps the prompt within the model's 512 tokens
    def true_count(messages: list[dict]) -> int:
        ids = smollm2.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
        return len(ids["input_ids"] if hasattr(ids, "keys") else ids)

    sent: list[int] = []

    def special(req: dict, t: str) -> Reply | None:
        sent.append(true_count(req["body"]["messages"]))
        return None

    chat = judge(0, TEXTS[kind])
    assert true_count([{"role": m.role, "content": m.content} for m in chat]) > 512  # it must be cut

    with Scripted(server(special, entry={"id": "judge", "root": "/elsewhere/judge", "max_model_len": 512})) as s:
        llm = make_llm("openai", base_url=s.url, use_cache=False, **FAST)
        assert llm.tokens.source == "estimate"
        got = llm.choice_logprobs([chat], CHOICES)
        assert p_first(got[0]) == pytest.approx(0.75)
        assert sent[-1] <= 512 - llm.choice_reserve_tokens and llm.usage.truncated_prompts == 1


# ----------------------------------------------------------------------------- identity

def test_llamacpp_answering_any_name_is_identified_by_what_it_lists(tmp_path):
    # llama.cpp serves its one model under any requested name; /v1/models lists it by file with its meta
    def llamacpp(size: int, p_first_tok: float):
        entry = {"id": "/models/judge.gguf", "object": "model", "created": int(time.time()), "owned_by": "llamacpp",
                 "meta": {"n_ctx_train": 4096, "n_params": size, "size": size * 2}}
        top = [("First", log(p_first_tok)), ("Second", log(1 - p_first_tok - 0.01))]
        return server(lambda req, t: Reply(body=chat_answer(top)), entry=entry)

    port = free_port()
    with Scripted(llamacpp(135, 0.8), port=port) as s:
        a = make_llm("openai", "judge", base_url=s.url, cache_dir=str(tmp_path), **FAST)
        assert p_first(a.choice_logprobs([judge(0)], CHOICES)[0]) == pytest.approx(0.8 / 0.99)
    with Scripted(llamacpp(360, 0.2), port=port) as s:  # other weights, same port, same name asked for
        b = make_llm("openai", "judge", base_url=s.url, cache_dir=str(tmp_path), **FAST)
        assert p_first(b.choice_logprobs([judge(0)], CHOICES)[0]) == pytest.approx(0.2 / 0.99)
        assert b.usage.cache_hits == 0 and a.identity != b.identity


def test_a_server_that_reports_nothing_says_how_to_name_the_weights(tmp_path, capsys):
    with Scripted(lambda req: Reply(404, {"error": "not found"}) if req["method"] == "GET"
                  else server()(req)) as s:
        llm = make_llm("openai", "judge", base_url=s.url, cache_dir=str(tmp_path), **FAST)
        assert p_first(llm.choice_logprobs([judge(0)], CHOICES)[0]) == pytest.approx(0.75)
        assert "--model-revision" in capsys.readouterr().err


@pytest.mark.parametrize("entry", [
    b'{"id": "judge", "max_model_len": "abc"}', b'{"id": "judge", "max_model_len": Infinity}',
    b'{"id": "judge", "max_model_len": NaN}', b'{"id": "judge", "max_model_len": -5}',
    b'{"id": "judge", "max_model_len": true}', b'{"id": "judge", "max_model_len": 1e400}',
    b'{"id": "judge", "created": -Infinity}', b'{"id": "judge", "meta": {"n_ctx_train": "x"}}',
    b'{"id": "judge", "meta": [1, 2]}',
], ids=lambda b: b.decode().split(", ", 1)[1][:-1])
def test_junk_model_metadata_is_ignored(entry):
    def handle(req: dict) -> Reply:
        if req["method"] == "GET":
            return Reply(body=b'{"object": "list", "data": [' + entry + b"]}")
        return server()(req)

    with Scripted(handle) as s:
        llm = make_llm("openai", base_url=s.url, use_cache=False, **FAST)
        assert llm.context_length == 8192  # the default: nothing usable was said
        assert p_first(llm.choice_logprobs([judge(0)], CHOICES)[0]) == pytest.approx(0.75)


def test_the_whole_batch_failing_on_a_dead_server_is_still_one_clear_error(tmp_path):
    # the counterpart of the poison-prompt tests: a server answering 503 to everything stops the run
    with Scripted(server(lambda req, t: Reply(503, {"error": "down"}))) as s:
        llm = make_llm("openai", base_url=s.url, cache_dir=str(tmp_path), batch_size=4, **FAST)
        with pytest.raises(LLMError, match="failed after"):
            within(20, lambda: llm.choice_logprobs([judge(i) for i in range(8)], CHOICES))
