"""default-judge: unit logic with a scripted LLM, and end to end with the real SmolLM2 model."""

from __future__ import annotations

import math
import re

import pytest

from personalrewardbench.data.schema import Message, Query
from personalrewardbench.judging import FIRST, SECOND
from personalrewardbench.llm import ScriptedLLM
from personalrewardbench.methods import MethodEnv, MethodError, load_method
from tests.conftest import make_tiny_benchmark
from tests.methods.judge_e2e import evaluate_and_verify, smollm2


def _section(text: str, title: str) -> str:
    return re.search(rf"## {title} response\n(.*?)(?:\n\n## |\n\n[A-Z][a-z]+ [a-z]|$)", text, re.S).group(1)


def longer_wins(chat, choices):
    """Log-probs that favour the longer of the two shown responses (read from the prompt)."""
    body = next(m.content for m in chat if m.role == "user")
    a, b = len(_section(body, "First")), len(_section(body, "Second"))
    return {FIRST: math.log(0.8) if a > b else math.log(0.2), SECOND: math.log(0.2) if a > b else math.log(0.8)}


def _queries() -> list[Query]:
    ctx = (Message("user", "Earlier question"), Message("assistant", "Earlier answer"), Message("user", "Now?"))
    return [Query("q1", "u1", ctx, "a much longer and more detailed answer", "short"),
            Query("q2", "u2", ctx, "short", "a much longer and more detailed answer")]


def _setup(method, llm, seed=0):
    method.setup(MethodEnv(seed=seed, llm=llm, show_progress=False))
    return method


def test_registry_knows_the_reference_default_and_our_variants():
    ref, direct, cot = load_method("default-judge"), load_method("default-judge-direct"), load_method("default-judge-cot")
    assert (ref.variant, ref.answer, ref.wording, ref.max_reasoning_tokens, ref.retry_temperature) == \
        ("cot", "parse", "human-judge", 8192, None)
    assert (direct.name, direct.variant, direct.wording) == ("default-judge-direct", "direct", "plain")
    assert (cot.name, cot.variant, cot.answer, cot.max_reasoning_tokens) == ("default-judge-cot", "cot", "logprobs", 256)
    assert set(direct.prompt_templates) >= {"system", "comparison", "direct_request", "cot_request"}
    assert "human judge" in ref.prompt_templates["cot_request"] and "better overall" in direct.system_prompt


def test_reference_judge_reasons_then_its_answer_is_parsed_one_request_each():
    """As synthesizeme.DefaultJudge runs: chain of thought on which response the human judge is more
    likely to prefer, with 1-3 speculations; temperature 0; up to 8,192 tokens; a tie (here a failed
    judgment, scored wrong) when no answer can be read; identical cached retries (one request)."""
    seen = []

    def gen(chat, params):
        seen.append((chat, params))
        if "detailed answer\n\n## Second" in chat[-1].content:
            return "Hypothesis 1: the judge wants detail.\nAnswer: First"
        return "The judge might like brevity, or not."

    m = _setup(load_method("default-judge"), ScriptedLLM(generate_fn=gen))
    assert m.predict(_queries()) == [1.0, None]
    assert len(seen) == 2 and {(p.temperature, p.max_tokens, p.stop) for _, p in seen} == {(0.0, 8192, ())}
    system, user = seen[0][0]
    assert "human judge" in system.content and "one to three" in system.content
    assert user.content.rstrip().endswith("'Answer: First' or 'Answer: Second'.")
    per = m.usage()["per_user"]
    assert per["u2"]["failed_judgments"] == 1 and per["u2"]["retries"] == 0


def test_bad_config_is_a_method_error():
    with pytest.raises(MethodError, match="variant"):
        load_method("default-judge", {"variant": "sometimes"})
    with pytest.raises(MethodError, match="answer"):
        load_method("default-judge", {"answer": "vibes"})
    with pytest.raises(MethodError, match="needs an LLM"):
        load_method("default-judge").setup(MethodEnv(llm=None))


def test_direct_scores_every_query_in_one_choice_call():
    llm = ScriptedLLM(choice_fn=longer_wins)
    calls = []
    real = llm.choice_logprobs
    llm.choice_logprobs = lambda chats, choices: calls.append((len(chats), tuple(choices))) or real(chats, choices)
    m = _setup(load_method("default-judge-direct"), llm)
    m.fit([])
    assert m.predict(_queries()) == [pytest.approx(0.8), pytest.approx(0.2)]
    assert calls == [(2, (FIRST, SECOND))]
    usage = m.usage()
    assert usage["totals"]["judgments"] == 2 and usage["totals"]["failed_judgments"] == 0
    assert set(usage["prompt_template_hashes"]) == set(m.prompt_templates)


def test_direct_prompt_shows_the_whole_conversation_and_both_responses():
    seen = []
    llm = ScriptedLLM(choice_fn=lambda chat, choices: seen.append(chat) or {FIRST: -1.0, SECOND: -1.0})
    m = _setup(load_method("default-judge-direct"), llm)
    assert m.predict(_queries()[:1]) == [0.5]  # equal log-probs: a tie
    system, user = seen[0]
    assert system.role == "system" and user.role == "user"
    assert "User: Earlier question" in user.content and "Assistant: Earlier answer" in user.content
    assert user.content.index("a much longer") < user.content.index("\nshort\n")
    assert user.content.rstrip().endswith("First or Second.")


def test_unscorable_request_is_a_counted_failed_judgment():
    def boom(chat, choices):
        raise RuntimeError("backend failed")

    m = _setup(load_method("default-judge-direct"), ScriptedLLM(choice_fn=boom))
    assert m.predict(_queries()) == [None, None]
    assert m.usage()["per_user"]["u1"]["failed_judgments"] == 1


def test_long_conversation_is_cut_oldest_first_and_counted():
    q = Query("q", "u1", (Message("user", "old " * 400), Message("assistant", "reply"), Message("user", "Now?")),
              "yes", "no")
    seen = []
    llm = ScriptedLLM(choice_fn=lambda chat, c: seen.append(chat) or {FIRST: 0.0, SECOND: -1.0}, context_length=120)
    m = _setup(load_method("default-judge-direct"), llm)
    assert m.predict([q])[0] > 0.5
    assert "old old" not in seen[0][-1].content and "User: Now?" in seen[0][-1].content
    assert m.usage()["per_user"]["u1"]["turns_dropped"] == 1


def test_cot_reasons_with_a_cap_then_scores_the_answer_in_a_followup():
    gens, scored = [], []

    def gen(chat, params):
        gens.append(params)
        return "The first one is more complete. " * 200  # longer than the cap

    def choice(chat, choices):
        scored.append(chat)
        return {FIRST: math.log(0.9), SECOND: math.log(0.1)}

    llm = ScriptedLLM(generate_fn=gen, choice_fn=choice)
    m = _setup(load_method("default-judge-cot", {"max_reasoning_tokens": 40}), llm)
    assert m.predict(_queries()) == [pytest.approx(0.9)] * 2
    assert all(p.max_tokens == 40 and p.temperature == 0.0 and "Answer:" in p.stop for p in gens)
    roles = [msg.role for msg in scored[0]]
    assert roles == ["system", "user", "assistant", "user"]
    assert scored[0][2].content.startswith("The first one") and len(scored[0][2].content.split()) <= 40
    assert "Answer: First" in scored[0][1].content  # the request asks for the answer line
    assert m.usage()["totals"]["reasoning_capped"] == 2


def test_cot_parse_mode_with_resampled_retries_retries_then_fails_and_counts():
    def gen(chat, params):
        body = chat[-1].content
        if "detailed answer\n\n## Second" in body:  # q1: always parseable
            return "Longer is better.\nAnswer: First"
        return "I keep thinking and never answer."  # q2: never parseable

    m = _setup(load_method("default-judge-cot", {"answer": "parse", "retry_temperature": 0.7}),
               ScriptedLLM(generate_fn=gen))
    assert m.predict(_queries()) == [1.0, None]
    per = m.usage()["per_user"]
    assert per["u1"]["failed_judgments"] == 0 and per["u1"]["retries"] == 0
    assert per["u2"]["failed_judgments"] == 1 and per["u2"]["retries"] == 3


# ---------------------------------------------------------------------------------- end to end


def test_default_judge_direct_end_to_end_with_smollm2(tmp_path):
    llm = smollm2()
    bench = make_tiny_benchmark(n_users=2, n_train=1, n_val=1, n_test=1)
    res = evaluate_and_verify("default-judge-direct", bench, llm, tmp_path)
    scores = res["scores"]
    assert res["status"] == "ok" and scores["n_judgments"] == 4 and scores["n_failed"] == 0
    assert 0.0 <= scores["accuracy"] <= 1.0 and res["cost"]["llm_calls"] >= 4
    assert res["provenance"]["llm_identity"] == llm.identity
    assert "direct_request" in res["provenance"]["prompt_template_hashes"]
    assert res["method_usage"]["totals"]["judgments"] == 4


def test_default_judge_reference_cot_end_to_end_with_smollm2(tmp_path):
    bench = make_tiny_benchmark(n_users=1, n_train=1, n_val=1, n_test=1)
    res = evaluate_and_verify("default-judge", bench, smollm2(), tmp_path, {"max_reasoning_tokens": 24})
    assert res["status"] == "ok" and res["scores"]["n_judgments"] == 2
    assert 0 < res["cost"]["completion_tokens"] <= 2 * 24  # it wrote reasoning, within the cap
    assert res["method"]["config"]["max_reasoning_tokens"] == 24
    totals = res["method_usage"]["totals"]  # an answer cut off by the cap is a counted failure, never hidden
    assert totals["failed_judgments"] == res["scores"]["n_failed"] and totals["reasoning_capped"] <= 2
