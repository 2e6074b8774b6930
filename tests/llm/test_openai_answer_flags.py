"""What an answer was survives the request cache, answers from another model are counted, and replies past
their byte limit fail (faults a red-team server found in the openai backend).

Every server is started here on 127.0.0.1 (``red_server.Scripted``, ``fake_server.FakeServer``).
Expected values are by hand: an answer that lists only its own token ``First`` at log-probability -0.1
leaves at most 1 - e^-0.1 for ``Second``, so p(First) = e^-0.1 / (e^-0.1 + 1 - e^-0.1) = e^-0.1 = 0.9048.
"""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest

from personalrewardbench.data.schema import Message
from personalrewardbench.llm import LLMError, make_llm
from personalrewardbench.llm.base import GenerationParams
from personalrewardbench.llm.cache import DB_NAME

from .fake_server import FakeServer
from .red_server import Reply, Scripted, chat_answer, log
from .test_red_team_servers import CHOICES, FAST, GOOD, judge, p_first, server

#: ``"top_logprobs": null`` with only the sampled token listed (the red-team server's ``toplist-null``)
TOPLIST_NULL = {"id": "x", "object": "chat.completion", "choices": [{
    "index": 0, "message": {"role": "assistant", "content": "First"}, "finish_reason": "stop",
    "logprobs": {"content": [{"token": "First", "logprob": -0.1, "top_logprobs": None}]}}],
    "usage": {"prompt_tokens": 10, "completion_tokens": 1}}
ENTRY = {"id": "judge", "object": "model", "root": "/models/judge-weights", "max_model_len": 4096}


def answer_as(name: str | None, body: dict = GOOD):
    """The healthy answer, its ``model`` field set to ``name`` (None: no such field)."""
    return server(lambda req, t: Reply(body={**body, **({"model": name} if name is not None else {})}), entry=ENTRY)


# ----------------------------------------------------------------------------- degraded answers replayed from cache

def test_upper_bound_answers_are_counted_again_when_replayed_from_the_cache(tmp_path):
    with Scripted(server(lambda req, t: Reply(body=TOPLIST_NULL))) as s:
        first = make_llm("openai", base_url=s.url, cache_dir=str(tmp_path), **FAST)
        got = first.choice_logprobs([judge(i) for i in range(3)], CHOICES)
        assert [p_first(g) for g in got] == pytest.approx([math.exp(-0.1)] * 3)
        assert got[0]["Second"] == pytest.approx(math.log(1 - math.exp(-0.1)))  # an upper bound, not a measure
        assert first.usage.unlisted_choices == 3 and first.usage.cache_hits == 0
        sent = len(s.chats())
        again = make_llm("openai", base_url=s.url, cache_dir=str(tmp_path), **FAST)
        replayed = again.choice_logprobs([judge(i) for i in range(3)], CHOICES)
        assert len(s.chats()) == sent  # nothing sent: every answer came from the cache
        assert replayed == got
        u = again.usage
        assert (u.cache_hits, u.unlisted_choices, u.by_kind["choice"]["unlisted_choices"]) == (3, 3, 3)
        # the same request twice in one call: both answers are upper bounds
        again.choice_logprobs([judge(0), judge(0)], CHOICES)
        assert again.usage.unlisted_choices == 5


def test_healthy_answers_replay_with_no_degradation(tmp_path):
    with Scripted(server()) as s:
        for _ in range(2):  # computed, then replayed
            llm = make_llm("openai", base_url=s.url, cache_dir=str(tmp_path), **FAST)
            got = llm.choice_logprobs([judge(i) for i in range(3)], CHOICES)
            llm.generate([judge(9)], GenerationParams(max_tokens=8))
            assert [p_first(g) for g in got] == pytest.approx([0.75] * 3)  # 0.6 / (0.6 + 0.2)
            u = llm.usage
            assert (u.unlisted_choices, u.truncated_prompts, u.clamped_max_tokens, u.model_mismatches) == (0, 0, 0, 0)
        assert llm.usage.cache_hits == 4


def long_and_short(words: int) -> tuple[list[Message], list[Message]]:
    return ([Message("system", "Judge."), Message("user", " ".join(f"word{i}" for i in range(words)))],
            [Message("user", "Say hi.")])


def test_truncated_prompts_and_clamped_reply_caps_are_counted_again_when_replayed(tmp_path):
    with FakeServer("stub", max_model_len=64) as s:  # no /tokenize, no local tokenizer: the estimate counts
        counts = []
        for _ in range(2):
            llm = make_llm("openai", base_url=s.url, cache_dir=str(tmp_path), progress=False)
            long, short = long_and_short(200)
            cut = llm.generate([long], GenerationParams(max_tokens=8))[0]  # 200 words cannot fit 64 tokens
            low = llm.generate([short], GenerationParams(max_tokens=1000))[0]  # 1000 > what 64 tokens leave
            assert cut.prompt_truncated and not cut.reply_clamped
            assert low.reply_clamped and not low.prompt_truncated
            u = llm.usage
            counts.append((u.truncated_prompts, u.clamped_max_tokens, u.by_kind["generate"]["clamped_max_tokens"],
                           u.cache_hits))
        assert len(s.chat_requests()) == 2  # the second round was answered from the cache
        assert counts == [(1, 1, 1, 0), (1, 1, 1, 2)]


def test_cache_entries_written_before_the_flags_were_stored_still_load(tmp_path):
    with FakeServer("stub", max_model_len=64) as s:
        llm = make_llm("openai", base_url=s.url, cache_dir=str(tmp_path), progress=False)
        long, _ = long_and_short(200)
        text = llm.generate([long], GenerationParams(max_tokens=8))[0].text
        llm.close()
        db = sqlite3.connect(Path(tmp_path) / DB_NAME)  # rewrite every entry in the old shape
        rows = db.execute("SELECT key, value FROM requests").fetchall()
        for key, value in rows:
            entry = json.loads(value)
            assert "flags" in entry
            db.execute("UPDATE requests SET value = ? WHERE key = ?",
                       (json.dumps({"value": entry["value"], "truncated": entry["truncated"]}), key))
        db.commit()
        db.close()
        old = make_llm("openai", base_url=s.url, cache_dir=str(tmp_path), progress=False)
        again = old.generate([long], GenerationParams(max_tokens=8))[0]
        assert again.cached and again.text == text and again.prompt_truncated
        assert (old.usage.cache_hits, old.usage.truncated_prompts, old.usage.model_mismatches) == (1, 1, 0)
        assert len(s.chat_requests()) == 1


# ----------------------------------------------------------------------------- answers from another model

@pytest.mark.parametrize("name", [None, "", "judge", "JUDGE", "/models/judge-weights", "judge-2024-07-18"],
                         ids=["absent", "empty", "asked", "case", "root", "dated-snapshot"])
def test_an_answer_naming_the_model_asked_is_no_mismatch(name, capsys):
    with Scripted(answer_as(name)) as s:
        llm = make_llm("openai", base_url=s.url, model="judge", use_cache=False, **FAST)
        llm.choice_logprobs([judge(0)], CHOICES)
        llm.generate([judge(1)], GenerationParams(max_tokens=8))
        assert llm.usage.model_mismatches == 0 and "other_models" not in llm.usage.extra
        assert "name the model" not in capsys.readouterr().err


def test_answers_from_another_model_are_counted_warned_once_and_replayed(tmp_path, capsys):
    with Scripted(answer_as("gpt-evil")) as s:
        llm = make_llm("openai", base_url=s.url, model="judge", cache_dir=str(tmp_path), **FAST)
        got = llm.choice_logprobs([judge(i) for i in range(3)], CHOICES)
        assert [p_first(g) for g in got] == pytest.approx([0.75] * 3)  # kept, not failed
        llm.generate([judge(7)], GenerationParams(max_tokens=8))
        u = llm.usage
        assert (u.model_mismatches, u.by_kind["choice"]["model_mismatches"], u.by_kind["generate"]["model_mismatches"],
                u.failed_requests) == (4, 3, 1, 0)
        assert u.extra["other_models"] == {"gpt-evil": 4}
        err = capsys.readouterr().err
        assert err.count("'gpt-evil'") == 1 and "not 'judge'" in err  # once, naming both
        sent = len(s.chats())
        again = make_llm("openai", base_url=s.url, model="judge", cache_dir=str(tmp_path), **FAST)
        again.choice_logprobs([judge(i) for i in range(3)], CHOICES)
        assert len(s.chats()) == sent
        assert (again.usage.cache_hits, again.usage.model_mismatches) == (3, 3)
        assert again.usage.extra["other_models"] == {"gpt-evil": 3}
        assert "'gpt-evil'" in capsys.readouterr().err


def test_a_hostile_model_name_is_shown_escaped_and_cut(capsys):
    name = "evil\x1b[2J" + "x" * 5000
    with Scripted(answer_as(name)) as s:
        llm = make_llm("openai", base_url=s.url, model="judge", use_cache=False, **FAST)
        llm.choice_logprobs([judge(0)], CHOICES)
        [shown] = llm.usage.extra["other_models"]
        assert shown.startswith("evil\\x1b[2J") and len(shown) <= 120
        err = capsys.readouterr().err
        assert "\x1b" not in err and len(err) < 1000


# ----------------------------------------------------------------------------- replies past their byte limit

# The limit (reply_byte_limit): 1 MiB + max_tokens * (1 KiB + (top_logprobs + 1) * 512 B when log-probabilities
# are asked): 1,056,768 bytes for max_tokens=8, 1,060,352 for a choice request (1 token, 20 listed).
GEN_LIMIT = 1024 * 1024 + 8 * 1024
CHOICE_LIMIT = 1024 * 1024 + 1 * (1024 + 21 * 512)


def padded(body: dict, size: int) -> bytes:
    """``body`` as JSON of exactly ``size`` bytes (trailing blanks are valid JSON)."""
    data = json.dumps(body).encode()
    assert len(data) <= size
    return data + b" " * (size - len(data))


@pytest.mark.parametrize("mode", ["normal", "chunked"])  # Content-Length stated, or not
def test_a_reply_past_its_byte_limit_fails_that_request_only(mode):
    def special(req, text):
        if "Q1" in text:  # far past the limit
            return Reply(body=padded(chat_answer(None, "First " + "A" * 3_000_000), 3_100_000), mode=mode)
        if "Q2" in text:  # just under it: a (long) answer
            return Reply(body=padded(chat_answer(None, "Second"), GEN_LIMIT - 100), mode=mode)
        if "Q3" in text:  # just over it
            return Reply(body=padded(chat_answer(None, "Second"), GEN_LIMIT + 100), mode=mode)
        return None

    with Scripted(server(special)) as s:
        llm = make_llm("openai", base_url=s.url, use_cache=False, **FAST)
        out = llm.generate([judge(i) for i in range(4)], GenerationParams(max_tokens=8))
        assert [c.finish_reason for c in out] == ["stop", "error", "stop", "error"]
        assert out[2].text == "Second" and out[1].text == out[3].text == ""
        u = llm.usage
        assert (u.failed_requests, u.retries, u.refused_requests) == (2, 0, 0)
        sent = [b["messages"][-1]["content"].split(":")[0] for b in s.chats()]
        assert sorted(sent) == ["Q0", "Q1", "Q2", "Q3"]  # each sent once: a reply too large is not retried


def test_choice_requests_have_their_own_byte_limit():
    big = chat_answer([("First", log(0.6)), ("Second", log(0.2))])

    def special(req, text):
        if req["body"].get("logprobs"):
            return Reply(body=padded(big, CHOICE_LIMIT - 100 if "Q0" in text else CHOICE_LIMIT + 100))
        return Reply(body=chat_answer(None, "Second"))  # the greedy fallback of a failed choice request

    with Scripted(server(special)) as s:
        llm = make_llm("openai", base_url=s.url, use_cache=False, **FAST)
        got = llm.choice_logprobs([judge(0), judge(1)], CHOICES)
        assert p_first(got[0]) == pytest.approx(0.75) and got[1] == {}
        assert llm.usage.failed_requests == 1 and llm.usage.choice_fallbacks == 0


def test_a_server_whose_every_reply_is_too_large_is_a_clear_error():
    with Scripted(server(lambda req, t: Reply(body=padded(chat_answer(None, "First"), 3_000_000)))) as s:
        llm = make_llm("openai", base_url=s.url, use_cache=False, **FAST)
        with pytest.raises(LLMError, match=r"passed 1,056,768 bytes"):
            llm.generate([judge(0), judge(1)], GenerationParams(max_tokens=8))


# ----------------------------------------------------------------------------- what a run reports

def test_prb_evaluate_reports_the_same_degradation_when_rerun_from_the_cache(tmp_path, capsys):
    from personalrewardbench.cli import main
    from personalrewardbench.data import save_benchmark
    from tests.eval.helpers import random_benchmark

    bench = tmp_path / "bench"
    save_benchmark(random_benchmark(n_users=2, n_test=2, seed=3, name="tiny-liar"), bench)
    queries = 2 * 2 * 2  # users x test pairs x both orders
    with Scripted(server(lambda req, t: Reply(body={**TOPLIST_NULL, "model": "gpt-evil"}))) as s:
        args = ["evaluate", "--method", "tests.llm.choice_method:ChoiceJudge", "--dataset", str(bench), "--out",
                str(tmp_path / "out"), "--quiet", "--backend", "openai", "--base-url", s.url,
                "--cache-dir", str(tmp_path / "cache")]
        seen = []
        for rerun in (False, True):
            assert main([*args, "--no-resume"] if rerun else args) == 0
            out = capsys.readouterr()
            assert (f"warning: LLM answers degraded: {queries} choices outside the top log-probabilities "
                    f"(upper bounds); {queries} answers naming another model than the one asked") in out.out
            assert "'gpt-evil', not 'judge'" in out.err
            [results] = (tmp_path / "out").rglob("results.json")
            res = json.loads(results.read_text())
            llm = res["degradation"]["llm"]
            seen.append((llm["unlisted_choices"], llm["model_mismatches"], llm["other_models.gpt-evil"],
                         res["cost"]["cache_hits"], len(s.chats())))
        # the rerun sent nothing (every answer from the cache) and reports what the first run did
        assert seen == [(queries, queries, queries, 0, queries), (queries, queries, queries, queries, queries)]
