"""Unit tests of the shared judge-prompt utilities (scripted LLM: whitespace-word tokens)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from personalrewardbench.data.schema import Message, PreferencePair
from personalrewardbench.judging import (
    CUT_MARK,
    FIRST,
    SECOND,
    JudgeStats,
    chosen_shown_first,
    fit_prompt,
    generate_parsed,
    item_seed,
    judge_chat,
    p_first,
    parse_choice,
    render_comparison,
    render_conversation,
    render_labeled_pair,
    reply_reserve,
)
from personalrewardbench.llm import GenerationParams, ScriptedLLM

CONTEXT = (Message("system", "Be nice."), Message("user", "Hi there"), Message("assistant", "Hello!"),
           Message("user", "What is two plus two?"))


def test_render_conversation_is_role_tagged_and_ordered():
    text = render_conversation(CONTEXT)
    assert text.splitlines()[0] == "System: Be nice."
    assert text.index("User: Hi there") < text.index("Assistant: Hello!") < text.index("User: What is two")


def test_render_comparison_labels_first_and_second_in_order():
    text = render_comparison(CONTEXT, "four", "five")
    assert text.index("First response\nfour") < text.index("Second response\nfive")
    assert "User: What is two plus two?" in text


def _pair(pid: str, flip: object = None) -> PreferencePair:
    meta = {} if flip is None else {"flip": flip}
    return PreferencePair(pair_id=pid, user_id="u", dataset="d", context=(Message("user", f"q {pid}"),),
                          chosen="CHOSEN", rejected="REJECTED", split="train", meta=meta)


def test_labeled_pair_marks_the_chosen_side_under_both_orders():
    for flip in (True, False):
        text = render_labeled_pair(_pair("p", flip), seed=0)
        first_chosen = text.index("CHOSEN") < text.index("REJECTED")
        assert first_chosen is flip
        assert text.endswith(f"Preferred: {FIRST if flip else SECOND}")
    assert "Reasoning: because" in render_labeled_pair(_pair("p", True), 0, reasoning=" because ")


def test_presentation_order_without_flip_is_a_seeded_coin_per_pair():
    pairs = [_pair(f"p{i}") for i in range(200)]
    a = [chosen_shown_first(p, 1) for p in pairs]
    assert a == [chosen_shown_first(p, 1) for p in reversed(pairs)][::-1]  # order-independent
    assert 60 < sum(a) < 140  # both orders occur
    assert a != [chosen_shown_first(p, 2) for p in pairs]
    assert item_seed(0, "x") != item_seed(1, "x") and 0 <= item_seed(5, "a", 3) < 2**31


@pytest.mark.parametrize(("text", "want"), [
    ("First", FIRST), ("second", SECOND), ("SECOND.", SECOND), ("  **First**  ", FIRST),
    ("Response 1", FIRST), ("response 2.", SECOND), ("(B)", SECOND), ("A", FIRST), ("b", SECOND),
    ("Answer: Second", SECOND), ("answer: first.", FIRST), ("**Answer:** Second", SECOND),
    ("Final answer: Response 2", SECOND), ("The preferred response is the first one.", FIRST),
    ("The first is wordy; the second is crisp.\nAnswer: First", FIRST),
    ("Both have merit, but the second one is clearer.", SECOND),
    ("Verdict - Option A", FIRST), ("Answer: Both are equally good", None),
    ("The first is long and the second is short.", None), ("", None), ("I cannot decide.", None),
    ("A detailed answer wins", None), ("Tie", None), ("Output (a)", FIRST),
])
def test_parse_choice(text, want):
    assert parse_choice(text) == want


def test_p_first_is_the_softmax_over_the_two_choices():
    assert p_first({FIRST: math.log(0.3), SECOND: math.log(0.1)}) == pytest.approx(0.75)
    assert p_first({FIRST: -2.0, SECOND: -2.0}) == 0.5
    assert p_first({FIRST: -math.inf, SECOND: -1.0}) == 0.0
    assert p_first({FIRST: -1.0, SECOND: -math.inf}) == 1.0
    assert p_first({FIRST: -1e6, SECOND: 0.0}) == 0.0
    assert p_first({FIRST: -math.inf, SECOND: -math.inf}) is None
    assert p_first({}) is None and p_first({FIRST: float("nan"), SECOND: 0.0}) is None


@given(st.floats(-1e4, 0), st.floats(-1e4, 0))
def test_p_first_is_symmetric_and_in_range(a, b):
    p, q = p_first({FIRST: a, SECOND: b}), p_first({FIRST: b, SECOND: a})
    assert 0.0 <= p <= 1.0 and p + q == pytest.approx(1.0)
    assert (p > 0.5) <= (a > b)  # never favours the less likely choice
    if a > b + 1e-9:
        assert p > 0.5


def _build(items, ctx):
    return judge_chat("judge", ctx, "resp one", "resp two", preamble="\n".join(items))


def test_fit_prompt_keeps_everything_when_it_fits():
    llm = ScriptedLLM(context_length=1000)
    f = fit_prompt(llm, _build, CONTEXT, ["a b c"] * 5)
    assert (f.items_kept, f.items_dropped, f.truncated, f.overflow) == (5, 0, False, False)
    assert f.tokens == llm.count_tokens(f.chat)


def test_fit_prompt_drops_items_from_the_end_first():
    items = [f"item{i} " + "w " * 20 for i in range(10)]  # 21 words each
    llm = ScriptedLLM(context_length=150)
    f = fit_prompt(llm, _build, CONTEXT, items, reserve_tokens=10)
    assert f.items_dropped > 0 and f.items_kept + f.items_dropped == 10
    text = f.chat[-1].content
    assert all(f"item{i} " in text for i in range(f.items_kept))
    assert not any(f"item{i} " in text for i in range(f.items_kept, 10))
    assert f.tokens <= 140 and not f.truncated
    # maximal: one more item would not fit
    assert llm.count_tokens(_build(items[: f.items_kept + 1], CONTEXT)) > 140


def test_fit_prompt_then_drops_oldest_turns_then_cuts_left_never_the_responses():
    long_ctx = (Message("user", "old " * 50), Message("assistant", "older reply " * 20),
                Message("user", "final question " + "x " * 30))
    whole = fit_prompt(ScriptedLLM(context_length=70), _build, long_ctx, ["hist " * 30], reserve_tokens=0)
    assert (whole.items_dropped, whole.turns_dropped, whole.chars_cut) == (1, 2, 0)
    assert "final question" in whole.chat[-1].content
    one = fit_prompt(ScriptedLLM(context_length=115), _build, long_ctx, [], reserve_tokens=0)
    assert (one.turns_dropped, one.chars_cut) == (1, 0) and "older reply" in one.chat[-1].content
    llm = ScriptedLLM(context_length=55)
    f = fit_prompt(llm, _build, long_ctx, ["hist " * 30], reserve_tokens=0)
    assert f.items_dropped == 1 and f.turns_dropped == 2 and f.chars_cut > 0 and not f.overflow
    body = f.chat[-1].content
    assert "old old" not in body and "older reply" not in body and CUT_MARK.strip() in body
    assert "resp one" in body and "resp two" in body and f.tokens <= 70
    # min_items keeps an item and cuts the conversation instead
    g = fit_prompt(ScriptedLLM(context_length=90), _build, long_ctx, ["hist " * 30], reserve_tokens=0, min_items=1)
    assert g.items_kept == 1 and g.truncated and "hist hist" in g.chat[-1].content


def test_fit_prompt_reports_overflow_when_responses_alone_do_not_fit():
    llm = ScriptedLLM(context_length=5)
    f = fit_prompt(llm, _build, CONTEXT, ["x"], reserve_tokens=0)
    assert f.overflow and "resp one" in f.chat[-1].content and "resp two" in f.chat[-1].content


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 30), max_size=12), st.integers(40, 400), st.integers(0, 3))
def test_fit_prompt_is_maximal_and_within_budget(sizes, budget, min_items):
    items = [f"i{n} " + "w " * s for n, s in enumerate(sizes)]
    llm = ScriptedLLM(context_length=budget)
    f = fit_prompt(llm, _build, CONTEXT, items, reserve_tokens=0, min_items=min_items)
    assert f.overflow or f.tokens <= budget
    assert f.items_kept >= min(min_items, len(items))
    if not f.truncated and not f.overflow and f.items_kept < len(items):
        assert llm.count_tokens(_build(items[: f.items_kept + 1], CONTEXT)) > budget


def test_generate_parsed_retries_with_new_seeds_then_fails():
    seen: list[tuple[str, int, float]] = []

    def gen(chat, params):
        q = chat[-1].content
        seen.append((q, params.seed, params.temperature))
        tries = sum(1 for s in seen if s[0] == q)
        if q == "never":
            return "hmm"
        if q == "third":
            return "Answer: Second" if tries == 3 else "no idea"
        return "Answer: First"

    llm = ScriptedLLM(generate_fn=gen)
    calls = []
    real = llm.generate
    llm.generate = lambda chats, p: calls.append(len(chats)) or real(chats, p)
    chats = [[Message("user", q)] for q in ("ok", "third", "never")]
    out = generate_parsed(llm, chats, GenerationParams(max_tokens=20, seed=3), parse_choice, retry_temperature=0.7)
    assert [o.value for o in out] == [FIRST, SECOND, None]
    assert [o.tries for o in out] == [1, 3, 4]
    assert calls == [3, 2, 2, 1]  # one batch per try, only the unparsed re-asked
    never = [s for s in seen if s[0] == "never"]
    assert len({s[1] for s in never}) == 4 and never[0][2] == 0.0 and all(s[2] >= 0.7 for s in never[1:])


def test_generate_parsed_default_retries_are_identical_so_a_failed_first_try_is_final():
    """The reference retries at temperature 0.0 x (0.001 + i/4) = 0 with requests cached: the same reply."""
    seen = []

    def gen(chat, params):
        seen.append((chat[-1].content, params.temperature))
        return "Answer: First" if chat[-1].content == "ok" else "no idea"

    llm = ScriptedLLM(generate_fn=gen)
    chats = [[Message("user", q)] for q in ("ok", "never")]
    out = generate_parsed(llm, chats, GenerationParams(max_tokens=20), parse_choice, tries=4)
    assert [(o.value, o.tries) for o in out] == [(FIRST, 1), (None, 1)]
    assert sorted(seen) == [("never", 0.0), ("ok", 0.0)]  # one request each, temperature 0


def test_reply_reserve_is_the_cap_at_most_half_the_context():
    llm = ScriptedLLM(context_length=8192)
    assert reply_reserve(llm, 256, 8) == 264
    assert reply_reserve(llm, 8192, 8) == 4096 + 8


def test_judge_stats_sums_per_user():
    st_ = JudgeStats()
    st_.add("u1", failed_judgments=1, judgments=2)
    st_.add("u2", judgments=1)
    st_.add("u1", judgments=1)
    usage = st_.as_usage()
    assert usage["per_user"]["u1"] == {"failed_judgments": 1, "judgments": 3}
    assert usage["totals"] == {"failed_judgments": 1, "judgments": 4}


def test_fit_prompt_cuts_a_single_turn_from_the_left():
    ctx = (Message("user", " ".join(f"w{i}" for i in range(100)) + " final?"),)
    f = fit_prompt(ScriptedLLM(context_length=60), _build, ctx, reserve_tokens=0)
    body = f.chat[-1].content
    assert f.turns_dropped == 0 and f.chars_cut > 0 and f.tokens <= 60
    assert "w0 " not in body and "w99 final?" in body and body.count(CUT_MARK.strip()) == 1
