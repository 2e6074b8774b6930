"""Raw Chatbot Arena and PRISM builders on fixtures in the upstream schemas."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from personalrewardbench.data import DataError, build_benchmark, load_benchmark
from personalrewardbench.data.arena import ArenaSettings
from personalrewardbench.data.prism import PrismSettings, pairs_from_conversation
from personalrewardbench.data.splits import SplitSettings
from tests.data.helpers import ARENA_DIR, PRISM_DIR, read_jsonl, write_jsonl

ARENA_ROWS = read_jsonl(ARENA_DIR / "train.jsonl")
PRISM_ROWS = read_jsonl(PRISM_DIR / "conversations.jsonl")


def _arena(tmp_path, rows, **kw):
    return build_benchmark("chatbot_arena_raw", input=write_jsonl(tmp_path / "arena.jsonl", rows), use_cache=False,
                           **kw)


def test_arena_users_ties_and_threshold():
    bench = build_benchmark("chatbot_arena_raw", input=ARENA_DIR, use_cache=False)
    assert bench.user_ids() == ["arena_user_1", "arena_user_2"]  # arena_user_3 has 3 pairs < 5
    assert bench.manifest.warnings["ties_dropped"] == 2  # tie and tie (bothbad)
    assert bench.manifest.warnings["users_below_min_pairs"] == 1
    ids = {p.pair_id for p in bench.pairs}
    assert "arena:a1tie" not in ids and "arena:a1bothbad" not in ids
    for uid in bench.user_ids():
        assert {p.split for p in bench.pairs if p.user_id == uid} == {"train", "val", "test"}
    assert all(v is None for v in bench.profiles.values())


def test_arena_winner_decides_chosen_and_multi_turn_context():
    bench = build_benchmark("chatbot_arena_raw", input=ARENA_DIR, use_cache=False)
    by_id = {p.pair_id: p for p in bench.pairs}
    rec = {r["question_id"]: r for r in ARENA_ROWS}
    for qid in ("a1q0", "a1q1", "a2q0"):
        p, r = by_id[f"arena:{qid}"], rec[qid]
        win = r["conversation_a"] if r["winner"] == "model_a" else r["conversation_b"]
        lose = r["conversation_b"] if r["winner"] == "model_a" else r["conversation_a"]
        assert p.chosen == win[-1]["content"] and p.rejected == lose[-1]["content"]
        assert p.meta["chosen_model"] == r[r["winner"]]
    multi = by_id["arena:a1q2"]
    conv_a = rec["a1q2"]["conversation_a"]
    assert [m.role for m in multi.context] == ["user", "assistant", "user"]
    assert [m.content for m in multi.context] == [m["content"] for m in conv_a[:3]]  # from conversation_a always
    assert multi.meta["turns"] == 2


def test_arena_multi_turn_modes_and_language(tmp_path):
    first = build_benchmark("chatbot_arena_raw", input=ARENA_DIR, use_cache=False,
                            arena=ArenaSettings(multi_turn="first_turn"))
    p = next(p for p in first.pairs if p.pair_id == "arena:a1q2")
    assert len(p.context) == 1 and p.chosen == "A longer and more detailed answer number 2, with context."
    dropped = build_benchmark("chatbot_arena_raw", input=ARENA_DIR, use_cache=False,
                              arena=ArenaSettings(multi_turn="drop"), split=SplitSettings(min_pairs_per_user=4))
    assert "arena:a1q2" not in {p.pair_id for p in dropped.pairs}
    assert dropped.manifest.warnings["multi_turn_dropped"] == 1
    english = build_benchmark("chatbot_arena_raw", input=ARENA_DIR, use_cache=False,
                              arena=ArenaSettings(languages=("English",)))
    assert english.manifest.warnings["other_language_dropped"] == 1
    assert english.manifest.filters["languages"] == ["English"]


@pytest.mark.parametrize("mutate,match", [
    (lambda r: r.pop("winner"), r"arena\.jsonl line 2: missing field 'winner'"),
    (lambda r: r.update(winner="model_c"), r"arena\.jsonl line 2: field 'winner' is 'model_c'"),
    (lambda r: r["conversation_a"][0].update(role="narrator"), r"line 2: field 'conversation_a\[0\]\.role'"),
    (lambda r: r["conversation_b"].pop(), r"line 2: field 'conversation_b' must alternate"),
])
def test_arena_malformed_rows(tmp_path, mutate, match):
    rows = [dict(r, conversation_a=[dict(m) for m in r["conversation_a"]],
                 conversation_b=[dict(m) for m in r["conversation_b"]]) for r in ARENA_ROWS]
    mutate(rows[1])
    with pytest.raises(DataError, match=match):
        _arena(tmp_path, rows)


def test_arena_invalid_json_line(tmp_path):
    f = tmp_path / "arena.jsonl"
    write_jsonl(f, ARENA_ROWS)
    f.write_text(f.read_text() + "{not json\n")
    with pytest.raises(DataError, match=rf"arena\.jsonl line {len(ARENA_ROWS) + 1}: invalid JSON"):
        build_benchmark("chatbot_arena_raw", input=f, use_cache=False)


def test_split_is_seeded_and_independent_of_input_order(tmp_path):
    a = _arena(tmp_path / "a", ARENA_ROWS)
    shuffled = list(ARENA_ROWS)
    random.Random(3).shuffle(shuffled)
    b = _arena(tmp_path / "b", shuffled)
    assert {p.pair_id: p.split for p in a.pairs} == {p.pair_id: p.split for p in b.pairs}
    assert a.content_hash == b.content_hash
    splits_by_seed = {tuple(p.split for p in _arena(tmp_path / f"s{s}", ARENA_ROWS,
                                                     split=SplitSettings(seed=s)).pairs) for s in range(6)}
    assert len(splits_by_seed) > 1


ALL_LOWER = PrismSettings(pairs="all-lower")


def test_prism_all_lower_pairs_context_ties_threshold_and_profiles():
    bench = build_benchmark("prism_raw", input=PRISM_DIR, use_cache=False, prism=ALL_LOWER)
    assert bench.user_ids() == ["user101", "user202"]  # user303 has 3 pairs
    w = bench.manifest.warnings
    assert w["score_ties_dropped"] == 1 and w["users_below_min_pairs"] == 1
    by_id = {p.pair_id: p for p in bench.pairs}
    # opening turn: chosen (80) beats the two 60s; the other 80 is a tie
    assert {"prism:c1001:t0:0>1", "prism:c1001:t0:0>2"} <= set(by_id) and "prism:c1001:t0:0>3" not in by_id
    second = by_id["prism:c1001:t1:0>1"]
    assert [m.role for m in second.context] == ["user", "assistant", "user"]
    assert second.context[1].content == "Try a vegetable stir fry with rice."  # the chosen branch
    assert second.chosen.startswith("Scrambled eggs") and second.meta["chosen_score"] == 70.0
    # one conversation never straddles splits
    for cid in ("c1001", "c1002", "c1003"):
        assert len({p.split for p in bench.pairs if p.meta["conversation_id"] == cid}) == 1
    assert bench.profiles["user101"]["gender"] == "Female"
    assert bench.profiles["user202"] is None  # not in the survey
    assert any(s["config"] == "survey" for s in bench.manifest.sources)


def test_prism_first_turn_only_and_score_gap():
    first = build_benchmark("prism_raw", input=PRISM_DIR, use_cache=False,
                            prism=PrismSettings(pairs="all-lower", turns="first"))
    assert all(p.meta["turn"] == 0 for p in first.pairs)
    gap = build_benchmark("prism_raw", input=PRISM_DIR, use_cache=False,
                          prism=PrismSettings(pairs="all-lower", min_score_gap=30),
                          split=SplitSettings(min_pairs_per_user=3))
    assert all(p.meta["chosen_score"] - p.meta["rejected_score"] > 30 for p in gap.pairs)


def test_prism_default_pairs_are_disjoint_opening_turn_matchings():
    """Default construction on the fixture, by hand: the opening turn's four ratings matched into two
    disjoint pairs (the matching with the largest smallest gap); later turns unused."""
    counts: Counter[str] = Counter()
    got = [pair for i, rec in enumerate(PRISM_ROWS)
           for pair, _ in pairs_from_conversation(rec, f"line {i + 1}", PrismSettings(), counts)]
    want = {
        # c1001: 80*(w0), 60(w1), 60(w2), 80(w3): both two-pair matchings have smallest gap 20; first in rating order
        "prism:c1001:t0:0>1", "prism:c1001:t0:3>2",
        # c1002: 90*, 20, 50, 35: (0>3, 2>1) has smallest gap min(55, 30) = 30, the largest
        "prism:c1002:t0:0>3", "prism:c1002:t0:2>1",
        # c1003: 95*, 10, 20, 60: (0>2, 3>1) min(75, 50) = 50
        "prism:c1003:t0:0>2", "prism:c1003:t0:3>1",
        # c20x: 75*, 30, 50, 40: (0>3, 2>1) min(35, 20) = 20
        *(f"prism:c20{k}:t0:{a}" for k in range(3) for a in ("0>3", "2>1")),
        # c3001: 70*, 50, 45, 30: (0>2, 1>3) min(25, 20) = 20
        "prism:c3001:t0:0>2", "prism:c3001:t0:1>3",
    }
    assert {p.pair_id for p in got} == want and len(got) == len(want)
    assert counts == {"later_turns_dropped": 1}  # c1001's second turn; every response found a partner
    by_id = {p.pair_id: p for p in got}
    low = by_id["prism:c1002:t0:2>1"]
    assert (low.chosen, low.rejected) == ("It depends on your own values.", "No, never.")
    assert low.meta["chosen_is_users_pick"] is False and by_id["prism:c1002:t0:0>3"].meta["chosen_is_users_pick"]
    assert all(len(p.context) == 1 and p.context[0].role == "user" for p in got)
    for p in got:  # no response is in two pairs
        assert sum(r in (q.chosen, q.rejected) for q in got for r in (p.chosen, p.rejected)) == 2
    bench = build_benchmark("prism_raw", input=PRISM_DIR, use_cache=False)
    assert bench.manifest.filters["pairs"] == "opening-disjoint"
    assert {p.pair_id for p in bench.pairs} == {w for w in want if "c3001" not in w}  # user303: 2 pairs < 5


@pytest.mark.parametrize("mutate,match", [
    (lambda r: r.pop("user_id"), r"conversations\.jsonl line 1: missing field 'user_id'"),
    (lambda r: r["conversation_history"][1].pop("if_chosen"), r"line 1 \(c1001\).*\[1\]\.if_chosen"),
    (lambda r: r["conversation_history"][1].update(score="high"), r"line 1 \(c1001\).*\[1\]\.score"),
    (lambda r: r["conversation_history"][0].update(turn="zero"), r"line 1 \(c1001\).*\[0\]\.turn"),
])
def test_prism_malformed_rows(tmp_path, mutate, match):
    rows = [dict(r, conversation_history=[dict(e) for e in r["conversation_history"]]) for r in PRISM_ROWS]
    mutate(rows[0])
    d = tmp_path / "prism"
    write_jsonl(d / "conversations.jsonl", rows)
    with pytest.raises(DataError, match=match):
        build_benchmark("prism_raw", input=d, use_cache=False)


def test_raw_sources_are_recognised_by_load_benchmark(tmp_path):
    assert load_benchmark(PRISM_DIR, cache_dir=tmp_path).name == "prism_raw"
    assert load_benchmark(ARENA_DIR / "train.jsonl", cache_dir=tmp_path).name == "chatbot_arena_raw"


@pytest.mark.parametrize("respell", [lambda t: t, lambda t: t.replace(" ", "  ", 1) + "\n"])
def test_repeated_battle_content_is_dropped_not_leaked(tmp_path, respell):
    rows = list(ARENA_ROWS)
    # the same user, question and answers in a second battle (exactly, or up to a double space and a newline)
    again = dict(rows[0], question_id="a1q0-again",
                 conversation_b=[dict(m, content=respell(m["content"])) for m in rows[0]["conversation_b"]])
    bench = _arena(tmp_path, [*rows, again])
    assert bench.manifest.warnings["repeated_pair_content_dropped"] == 1
    ids = {p.pair_id for p in bench.pairs}
    assert "arena:a1q0" in ids and "arena:a1q0-again" not in ids
