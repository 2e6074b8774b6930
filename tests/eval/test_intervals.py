"""Intervals that never overclaim: no interval from one unit, exact/score intervals at 0%/100% or few units,
and the reference code's kind as an extra figure. Expected bounds come from scipy."""

from __future__ import annotations

import random

import numpy as np
import pytest
from scipy.stats import binomtest, bootstrap

from personalrewardbench.intervals import MIN_BOOTSTRAP_UNITS, effective_units, wilson
from personalrewardbench.scoring import score
from tests.eval.helpers import both


def _exact(k: int, n: int) -> list[float]:
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return [ci.low, ci.high]


def test_all_correct_10_pairs_gets_the_exact_interval():
    recs = [r for i in range(10) for r in both(f"p{i}", f"u{i % 5}", 0.9, 0.1)]
    s = score(recs)["scores"]
    assert s["accuracy"] == 1.0
    assert s["accuracy_ci95"] == pytest.approx([0.6915028921812371, 1.0], abs=1e-12)
    assert s["accuracy_ci95"] == pytest.approx(_exact(10, 10), abs=1e-12)
    assert s["ci_kind"]["accuracy_ci95"] == "clopper-pearson"
    # the user intervals use users as the unit: 5 users, all at 100%
    assert s["accuracy_ci95_users"] == pytest.approx(_exact(5, 5), abs=1e-12)
    assert s["user_mean_accuracy_ci95"] == pytest.approx(_exact(5, 5), abs=1e-12)
    assert s["ci_detail"]["accuracy_ci95_users"]["n_units"] == 5
    # all wrong: the mirror image
    wrong = [r for i in range(10) for r in both(f"p{i}", f"u{i % 5}", 0.1, 0.9)]
    assert score(wrong)["scores"]["accuracy_ci95"] == pytest.approx(_exact(0, 10), abs=1e-12)


def test_one_user_has_no_user_interval_and_one_pair_none_at_all():
    s = score(both("a", "u", 0.9, 0.1) + both("b", "u", 0.9, 0.1))["scores"]  # --users 1: 2 pairs, all right
    for key in ("accuracy_ci95_users", "user_mean_accuracy_ci95", "user_mean_accuracy_ci95_reference"):
        assert s[key] is None and s["ci_kind"][key] == "none"
    assert "1 user" in s["ci_detail"]["accuracy_ci95_users"]["reason"]
    assert s["accuracy_ci95"] == pytest.approx(_exact(2, 2), abs=1e-12)  # not [1, 1]
    assert s["accuracy_ci95"][0] < 0.2
    one = score(both("a", "u", 0.9, 0.1))["scores"]
    assert one["accuracy_ci95"] is None and "1 pair" in one["ci_detail"]["accuracy_ci95"]["reason"]


def test_few_units_get_the_wilson_interval():
    # 4 pairs: 3 right in both orders, 1 wrong in both -> 3 of 4 units
    recs = [r for i in range(3) for r in both(f"p{i}", f"u{i}", 0.9, 0.1)] + both("p3", "u3", 0.1, 0.9)
    s = score(recs)["scores"]
    want = binomtest(3, 4).proportion_ci(method="wilson")
    assert s["accuracy_ci95"] == pytest.approx([want.low, want.high], abs=1e-12)
    assert s["ci_kind"]["accuracy_ci95"] == "wilson"
    # a fractional share (a pair right in one order only): between the whole-number neighbours
    recs = both("p0", "u0", 0.9, 0.9) + [r for i in range(1, 4) for r in both(f"p{i}", f"u{i}", 0.9, 0.1)]
    s = score(recs)["scores"]
    assert s["accuracy"] == pytest.approx(3.5 / 4)
    lo3, hi3 = binomtest(3, 4).proportion_ci(method="wilson")
    lo4, hi4 = binomtest(4, 4).proportion_ci(method="wilson")
    lo, hi = s["accuracy_ci95"]
    assert lo3 < lo < lo4 and hi3 < hi <= hi4


def test_wilson_matches_scipy_for_whole_counts():
    for k, n in ((0, 5), (3, 7), (12, 20), (9, 9)):
        want = binomtest(k, n).proportion_ci(method="wilson")
        assert wilson(k / n, n) == pytest.approx([want.low, want.high], abs=1e-12)


def test_effective_units_kish():
    assert effective_units(np.array([2, 2, 2])) == 3
    assert effective_units(np.array([1, 100])) == pytest.approx(101 ** 2 / (1 + 100 ** 2))
    # one huge user and many tiny ones: a pooled user interval is not a bootstrap over "20 users"
    recs = [r for i in range(40) for r in both(f"big{i}", "big", random.Random(i).random(), 0.3)]
    recs += [r for i in range(19) for r in both(f"s{i}", f"small{i}", 0.9, 0.1)]
    s = score(recs)["scores"]
    assert s["ci_detail"]["accuracy_ci95_users"]["n_effective"] < MIN_BOOTSTRAP_UNITS
    assert s["ci_kind"]["accuracy_ci95_users"] == "wilson"


def test_reference_interval_matches_scipy_bootstrap_within_users():
    rng = random.Random(5)
    recs = []
    per_user: dict[str, list[float]] = {}
    for u, skill in (("a", 0.8), ("b", 0.55), ("c", 0.35), ("d", 0.6)):
        for i in range(25):
            p1, p2 = (0.9 if rng.random() < skill else 0.1), (0.1 if rng.random() < skill else 0.9)
            recs += both(f"{u}{i}", u, p1, p2)
            per_user.setdefault(u, []).extend([float(p1 > 0.5), float(p2 < 0.5)])
    s = score(recs, seed=4)["scores"]
    samples = tuple(np.array(v) for _, v in sorted(per_user.items()))
    ref = bootstrap(samples, lambda *xs, axis: np.mean([x.mean(axis=axis) for x in xs], axis=0), paired=False,
                    vectorized=True, method="basic", n_resamples=9999, rng=np.random.default_rng(0))
    assert s["user_mean_accuracy"] == pytest.approx(np.mean([x.mean() for x in samples]))
    lo, hi = s["user_mean_accuracy_ci95_reference"]
    assert lo == pytest.approx(ref.confidence_interval.low, abs=0.012)
    assert hi == pytest.approx(ref.confidence_interval.high, abs=0.012)
    assert s["ci_kind"]["user_mean_accuracy_ci95_reference"] == "reference-bootstrap-basic"
    assert s["ci_detail"]["user_mean_accuracy_ci95_reference"]["resamples"] == 9999


def test_pair_interval_is_wider_than_the_reference_kind_when_pairs_move_together():
    # a method whose two judgments of a pair always agree (position-consistent): pairs are the real unit
    rng = random.Random(9)
    recs = []
    for i in range(400):
        ok = rng.random() < 0.6
        recs += both(f"p{i}", f"u{i % 40}", 0.9 if ok else 0.1, 0.1 if ok else 0.9)
    s = score(recs, resamples=4000)["scores"]
    width = s["accuracy_ci95"][1] - s["accuracy_ci95"][0]
    ref = s["user_mean_accuracy_ci95_reference"][1] - s["user_mean_accuracy_ci95_reference"][0]
    assert 1.25 < width / ref < 1.6  # about sqrt(2): the reference treats the 2 judgments as independent


def test_below_50_effective_units_the_interval_is_never_narrower_than_wilson():
    # 30 pairs (24 right in both orders, 6 wrong): the basic bootstrap covered 83-90% here (red team); Wilson
    recs = [r for i in range(24) for r in both(f"p{i}", f"u{i}", 0.9, 0.1)]
    recs += [r for i in range(24, 30) for r in both(f"p{i}", f"u{i}", 0.1, 0.9)]
    s = score(recs)["scores"]
    want = binomtest(24, 30).proportion_ci(method="wilson")
    assert s["accuracy_ci95"] == pytest.approx([want.low, want.high], abs=1e-12)
    assert s["ci_kind"]["accuracy_ci95"] == "wilson" and "< 50" in s["ci_detail"]["accuracy_ci95"]["reason"]


def test_few_units_away_from_the_rest_get_wilson_even_with_many_units():
    # 100 pairs, 3 wrong: the bootstrap's spread comes from 3 pairs only
    recs = [r for i in range(100) for r in both(f"p{i}", f"u{i % 60}", *((0.1, 0.9) if i < 3 else (0.9, 0.1)))]
    s = score(recs)["scores"]
    want = binomtest(97, 100).proportion_ci(method="wilson")
    assert s["accuracy_ci95"] == pytest.approx([want.low, want.high], abs=1e-12)
    assert "only 3 pairs differ" in s["ci_detail"]["accuracy_ci95"]["reason"]
    rng = random.Random(3)  # a balanced 100-pair run: enough of both, the bootstrap
    mixed = [r for i in range(100) for r in both(f"p{i}", f"u{i}", *((0.9, 0.1) if rng.random() < 0.6 else (0.1, 0.9)))]
    assert score(mixed)["scores"]["ci_kind"]["accuracy_ci95"] == "bootstrap-basic"


def test_paired_difference_with_few_discordant_pairs_uses_the_score_interval_on_half_shifted_scale():
    from personalrewardbench.scoring import paired_comparison

    # 60 pairs; a beats b (right twice vs wrong twice) on 4, the rest agree: (d + 1) / 2 = (4 + 56 / 2) / 60
    a = [r for i in range(60) for r in both(f"p{i}", f"u{i % 30}", 0.9, 0.1)]
    b = [r for i in range(60) for r in both(f"p{i}", f"u{i % 30}", *((0.1, 0.9) if i < 4 else (0.9, 0.1)))]
    b = [{**r, "query_id": "b-" + r["query_id"]} for r in b]
    out = paired_comparison(a, b)
    w = binomtest(32, 60).proportion_ci(method="wilson")
    assert out["difference"] == pytest.approx(4 / 60)
    assert out["ci95"] == pytest.approx([2 * w.low - 1, 2 * w.high - 1], abs=1e-12)
    assert out["ci_kind"]["ci95"] == "wilson"
    # many pairs and many discordant ones: the paired bootstrap
    rng = random.Random(8)
    a = [r for i in range(200) for r in both(f"p{i}", f"u{i % 80}", *((0.9, 0.1) if rng.random() < 0.7 else (0.1, 0.9)))]
    b = [r for i in range(200) for r in both(f"q{i}", f"u{i % 80}", *((0.9, 0.1) if rng.random() < 0.5 else (0.1, 0.9)))]
    b = [{**r, "pair_id": r["pair_id"].replace("q", "p")} for r in b]
    big = paired_comparison(a, b)
    assert big["ci_kind"] == {"ci95": "bootstrap-basic", "ci95_users": "bootstrap-basic"}
    lo, hi = big["ci95"]
    assert lo < big["difference"] < hi
