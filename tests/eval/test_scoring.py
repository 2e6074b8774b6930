"""The scorer against hand-computed cases and properties."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from personalrewardbench.scoring import ScoringError, paired_comparison, score, sign_test
from tests.eval.helpers import both, rec


def test_both_orders_counted_and_consistency():
    s = score(both("a", "u1", 0.9, 0.1))["scores"]  # right in both orders
    assert (s["accuracy"], s["n_judgments"], s["n_pairs"], s["position_consistency"]) == (1.0, 2, 1, 1.0)
    s = score(both("a", "u1", 1.0, 1.0))["scores"]  # always "first": right once
    assert (s["accuracy"], s["position_consistency"]) == (0.5, 0.0)
    s = score(both("a", "u1", 0.2, 0.8))["scores"]  # consistently prefers the rejected one
    assert (s["accuracy"], s["position_consistency"]) == (0.0, 1.0)


def test_ties_and_failures_are_wrong_and_counted():
    s = score(both("a", "u1", 0.5, 0.5) + both("b", "u1", None, 0.3) + both("c", "u1", 0.51, 0.49))["scores"]
    # a: tie, tie; b: failed, 0.3 in chosen_second is right; c: right, right
    assert s["n_correct"] == 3 and s["n_judgments"] == 6
    assert s["accuracy"] == pytest.approx(0.5)
    assert (s["n_ties"], s["n_failed"]) == (2, 1)
    assert s["position_consistency"] == pytest.approx(1 / 3)  # only c


def test_pooled_versus_user_mean_and_empty_users():
    recs = both("a1", "A", 0.9, 0.1) + both("a2", "A", 0.9, 0.9) + both("b1", "B", 0.1, 0.9)
    out = score(recs, users=["A", "B", "C"], user_extra={"A": {"n_train": 4, "n_val": 2}})
    s, pu = out["scores"], out["per_user"]
    assert s["accuracy"] == pytest.approx(3 / 6)
    assert s["user_mean_accuracy"] == pytest.approx((3 / 4 + 0 / 2) / 2)
    assert s["n_users"] == 2  # C has no test judgments
    assert pu["A"] == {"accuracy": 0.75, "n_pairs": 2, "n_judgments": 4, "n_correct": 3, "n_ties": 0, "n_failed": 0,
                       "n_train": 4, "n_val": 2}
    assert pu["B"]["accuracy"] == 0.0 and pu["B"]["n_pairs"] == 1
    assert pu["C"]["accuracy"] is None and pu["C"]["n_pairs"] == 0


def test_nothing_to_score():
    s = score([], users=["A"])["scores"]
    assert s["accuracy"] is None and s["accuracy_ci95"] is None and s["user_mean_accuracy"] is None
    assert s["n_judgments"] == 0 and s["position_consistency"] is None


def test_ci_contains_estimate():
    rng = random.Random(1)
    recs = [r for i in range(200) for r in both(f"p{i}", f"u{i % 60}", rng.random(), rng.random())]
    s = score(recs, resamples=500)["scores"]  # 200 pairs, 60 users: enough units for the bootstrap
    for key in ("accuracy_ci95", "accuracy_ci95_users"):
        lo, hi = s[key]
        assert 0 <= lo < s["accuracy"] < hi <= 1
        assert s["ci_kind"][key] == "bootstrap-basic"
    lo, hi = s["user_mean_accuracy_ci95"]
    assert lo < s["user_mean_accuracy"] < hi


def _naive_basic_ci(values_by_unit, n_by_unit, resamples, rng):
    k = len(values_by_unit)
    stats = []
    for _ in range(resamples):
        idx = rng.integers(0, k, size=k)
        stats.append(values_by_unit[idx].sum() / n_by_unit[idx].sum())
    est = values_by_unit.sum() / n_by_unit.sum()
    q_lo, q_hi = np.quantile(stats, [0.025, 0.975])
    return 2 * est - q_hi, 2 * est - q_lo


def test_pair_bootstrap_matches_a_naive_resampling_loop():
    """The multinomial shortcut has the same distribution as resampling pairs one by one."""
    rng = random.Random(7)
    recs = [r for i in range(300) for r in both(f"p{i}", f"u{i % 30}", rng.choice([0.9, 0.1, 0.5]),
                                                 rng.choice([0.9, 0.1, None]))]
    s = score(recs, resamples=20000, seed=3)["scores"]
    by_pair: dict[str, int] = {}
    for r in recs:
        ok = r["p"] is not None and (r["p"] > 0.5 if r["order"] == "chosen_first" else r["p"] < 0.5)
        by_pair[r["pair_id"]] = by_pair.get(r["pair_id"], 0) + ok
    correct = np.array(list(by_pair.values()), dtype=float)
    lo, hi = _naive_basic_ci(correct, np.full(len(correct), 2.0), 20000, np.random.default_rng(11))
    assert s["accuracy_ci95"][0] == pytest.approx(lo, abs=0.01)
    assert s["accuracy_ci95"][1] == pytest.approx(hi, abs=0.01)


def test_bootstrap_is_seeded():
    rng = random.Random(2)
    recs = [r for i in range(50) for r in both(f"p{i}", f"u{i % 7}", rng.random(), rng.random())]
    assert score(recs, seed=5) == score(recs, seed=5)
    assert score(recs, seed=5)["scores"]["accuracy_ci95"] != score(recs, seed=6)["scores"]["accuracy_ci95"]


@pytest.mark.parametrize("bad", [float("nan"), 1.5, -0.1, "0.7", True, float("inf")])
def test_bad_probability_is_a_clear_error(bad):
    with pytest.raises(ScoringError, match=r"prediction 2 .*(outside \[0, 1\]|not a number)"):
        score([rec("a", "u", "chosen_first", 0.2), rec("a", "u", "chosen_second", bad)])


def test_duplicate_and_unknown_order_rejected():
    with pytest.raises(ScoringError, match="judged twice"):
        score([rec("a", "u", "chosen_first", 0.2), rec("a", "u", "chosen_first", 0.3)])
    with pytest.raises(ScoringError, match="order"):
        score([rec("a", "u", "first", 0.2)])
    with pytest.raises(ScoringError, match="two different users"):
        score([rec("a", "u", "chosen_first", 0.2), rec("a", "v", "chosen_second", 0.3)])


def test_paired_comparison_hand_cases():
    a = [r for i in range(10) for r in both(f"p{i}", "u", 0.9, 0.1)]
    b = [r for i in range(10) for r in both(f"p{i}", "u", 0.1, 0.9)]
    out = paired_comparison(a, b)
    assert (out["accuracy_a"], out["accuracy_b"], out["difference"]) == (1.0, 0.0, 1.0)
    assert (out["wins_a"], out["wins_b"]) == (10, 0)
    assert out["p_value"] == pytest.approx(2 * 0.5 ** 10)
    same = paired_comparison(a, a)  # a run compared with itself: 0 by construction, on any pairs
    assert same["difference"] == 0.0 and same["p_value"] == 1.0 and same["ci95"] == [0.0, 0.0]
    assert same["ci_kind"]["ci95"] == "identical"
    # another run (its own query ids) that agrees on every pair: no discordant pair seen, but it could differ
    # elsewhere, so not [0, 0]: the Wilson interval for (d + 1) / 2 = 0.5 over 10 pairs, mapped back
    twin = [{**r, "query_id": "twin-" + r["query_id"]} for r in a]
    other = paired_comparison(a, twin)
    w = binomtest(5, 10).proportion_ci(method="wilson")
    assert other["ci95"] == pytest.approx([2 * w.low - 1, 2 * w.high - 1], abs=1e-12)
    assert other["ci_kind"]["ci95"] == "wilson" and other["p_value"] == 1.0
    with pytest.raises(ScoringError, match="share no judged pairs"):
        paired_comparison(a, [r for r in both("zz", "u", 0.1, 0.9)])


def test_paired_comparison_uses_only_shared_judgments():
    a = both("p1", "u", 0.9, 0.1) + both("p2", "u", 0.9, 0.1)
    b = both("p1", "u", 0.9, 0.9)
    out = paired_comparison(a, b)
    assert out["n_pairs"] == 1 and out["n_only_a"] == 2 and out["n_only_b"] == 0
    assert out["difference"] == pytest.approx(0.5)


judgment = st.tuples(st.sampled_from(["u1", "u2", "u3", "u4", "u5"]),
                     st.one_of(st.none(), st.sampled_from([0.0, 0.5, 1.0]), st.floats(0, 1)),
                     st.one_of(st.none(), st.floats(0, 1)))


@settings(max_examples=40, deadline=None)
@given(st.lists(judgment, min_size=1, max_size=40), st.randoms(use_true_random=False), st.integers(1, 5))
def test_scores_do_not_depend_on_order_or_split(items, rnd, n_parts):
    recs = [r for i, (u, p1, p2) in enumerate(items) for r in both(f"p{i}", u, p1, p2)]
    ref = score(recs, resamples=200, seed=1)
    shuffled = recs[:]
    rnd.shuffle(shuffled)
    assert score(shuffled, resamples=200, seed=1) == ref
    # shards by user, joined in any order, score the same as the whole
    users = sorted({r["user_id"] for r in recs})
    parts = [[r for r in recs if users.index(r["user_id"]) % n_parts == k] for k in range(n_parts)]
    rnd.shuffle(parts)
    assert score([r for part in parts for r in part], resamples=200, seed=1) == ref
    s = ref["scores"]
    correct = sum(1 for r in recs if r["p"] is not None
                  and (r["p"] > 0.5 if r["order"] == "chosen_first" else r["p"] < 0.5))
    assert math.isclose(s["accuracy"], correct / len(recs))
    assert s["n_judgments"] == len(recs) == 2 * s["n_pairs"]


@pytest.mark.parametrize("wins", [(0, 0), (10, 0), (3, 7), (5, 5), (40, 61), (1200, 1111), (0, 1)])
def test_sign_test_matches_scipy(wins):
    from scipy.stats import binomtest

    a, b = wins
    expected = binomtest(a, a + b, 0.5).pvalue if a + b else 1.0
    assert sign_test(a, b) == pytest.approx(expected, rel=1e-9)
