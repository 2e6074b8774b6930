"""The shortcut baselines: random, position, length."""

from __future__ import annotations

from personalrewardbench.data.schema import Message, Query
from personalrewardbench.evaluate import run_evaluation
from personalrewardbench.methods import MethodEnv, load_method
from tests.eval.helpers import random_benchmark

BENCH = random_benchmark(n_users=20, n_test=10, seed=3)


def _q(first: str, second: str, qid: str = "q", user: str = "u") -> Query:
    return Query(query_id=qid, user_id=user, context=(Message("user", "hi"),), first=first, second=second)


def test_position_always_first_scores_half(tmp_path):
    res = run_evaluation(load_method("position"), BENCH, MethodEnv(), tmp_path, show_progress=False)
    s = res["scores"]
    assert (s["accuracy"], s["user_mean_accuracy"], s["position_consistency"]) == (0.5, 0.5, 0.0)


def test_length_prefers_longer_and_ties_equal():
    m = load_method("length")
    assert m.predict([_q("long answer", "short"), _q("a", "bb"), _q("same", "four")]) == [1.0, 0.0, 0.5]
    words = load_method("length", {"unit": "words"})
    assert words.predict([_q("one two", "threefourfive")]) == [1.0]


def test_length_accuracy_matches_a_direct_count(tmp_path):
    res = run_evaluation(load_method("length"), BENCH, MethodEnv(), tmp_path, show_progress=False)
    test = BENCH.pairs_of("test")
    longer = sum(len(p.chosen) > len(p.rejected) for p in test)
    assert res["scores"]["n_correct"] == 2 * longer
    assert res["scores"]["n_ties"] == 2 * sum(len(p.chosen) == len(p.rejected) for p in test)


def test_random_is_seeded_per_query(tmp_path):
    m = load_method("random")
    m.setup(MethodEnv(seed=1))
    qs = [_q(f"a{i}", f"b{i}", qid=f"q{i}") for i in range(400)]
    p = m.predict(qs)
    assert set(p) == {0.0, 1.0} and 0.4 < sum(p) / len(p) < 0.6
    assert m.predict(list(reversed(qs))) == list(reversed(p))  # order/batch independent
    assert [m.predict([q])[0] for q in qs[:50]] == p[:50]
    m.setup(MethodEnv(seed=2))
    assert m.predict(qs) != p
    res = run_evaluation(load_method("random"), BENCH, MethodEnv(seed=0), tmp_path, show_progress=False)
    assert 0.4 < res["scores"]["accuracy"] < 0.6
