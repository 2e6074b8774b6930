"""`prb data audit` and the leak-probe baseline on PRISM-format data with random texts and labels.

Hand computation for the generated data (every conversation: an opening turn with four distinct
ratings, then two turns with two; texts unique; the highest rating is the user's pick):

- ``all-lower`` makes 3 + 1 + 1 = 5 pairs per conversation. Turn 0's three pairs share the chosen
  response (3 appearances against 1) and that response is the assistant turn of turns 1 and 2's
  contexts; turn 1's chosen response is in turn 2's context; turn 2's pair has no signal. So 4
  of every 5 test pairs are decided by structure, all correctly: affected share 4/5 = 0.8,
  structure-only accuracy (4 + 1/2) / 5 = 0.9; `response_in_context` speaks on 4/5, the
  repeat count on 3/5. With all d decided pairs correct, the Clopper-Pearson interval is
  [(0.025)^(1/d), 1], so the structure-only interval is [0.8 (0.025)^(1/d) + 0.1, 0.9].
- ``opening-disjoint`` (the default) makes 2 disjoint pairs per conversation whose contexts hold
  only the opening prompt: no signal, structure-only accuracy 0.5 (chance), nothing affected,
  at 2/5 of the pairs.
"""

from __future__ import annotations

import json

import pytest

from personalrewardbench.cli import main
from personalrewardbench.data import build_benchmark
from personalrewardbench.data.audit import audit_benchmark
from personalrewardbench.data.prism import PrismSettings
from personalrewardbench.evaluate import make_queries
from personalrewardbench.methods import MethodEnv, load_method
from tests.data.prism_random import write_random_prism

USERS, CONVERSATIONS, TURNS = 8, 6, 3


@pytest.fixture(scope="module")
def prism_dir(tmp_path_factory):
    return write_random_prism(tmp_path_factory.mktemp("prism-random"), users=USERS, conversations=CONVERSATIONS,
                              turns=TURNS, seed=7)


def _build(prism_dir, pairs: str):
    return build_benchmark("prism_raw", input=prism_dir, use_cache=False, prism=PrismSettings(pairs=pairs))


def test_old_construction_leaks_new_default_does_not(prism_dir, tmp_path, capsys):
    old, new = _build(prism_dir, "all-lower"), _build(prism_dir, "opening-disjoint")
    assert old.manifest.counts["pairs"] == USERS * CONVERSATIONS * 5
    assert new.manifest.counts["pairs"] == USERS * CONVERSATIONS * 2  # the cost: 2 of 5 pairs kept
    out = tmp_path / "old.json"
    built = tmp_path / "old-built"
    assert main(["data", "build", "--source", "prism_raw", "--input", str(prism_dir), "--out", str(built),
                 "--prism-pairs", "all-lower", "--no-cache"]) == 0
    assert main(["data", "audit", "--dataset", str(built), "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "structure-only accuracy" in table and "prism_raw (8 users)" in table
    report = json.loads(out.read_text())
    b = report["datasets"]["prism_raw"]
    n = old.manifest.counts["splits"]["test"]["pairs"]
    d = n * 4 // 5
    assert n % 5 == 0 and b["test_pairs"] == n and b["users"] == USERS
    assert b["affected_pairs"] == d and b["affected_share"] == pytest.approx(0.8)
    assert b["decided_correct"] == d and b["decided_accuracy"] == 1.0
    assert b["structure_only_accuracy"] == pytest.approx(0.9)
    lo = 0.025 ** (1 / d)
    assert b["decided_accuracy_ci95"] == pytest.approx([lo, 1.0])
    assert b["structure_only_accuracy_ci95"] == pytest.approx([0.8 * lo + 0.1, 0.9])
    assert b["signals"]["response_in_context"]["share"] == pytest.approx(0.8)
    assert b["signals"]["response_repeated_in_split"]["share"] == pytest.approx(0.6)
    assert b["signals"]["repeats_history_pair"]["pairs"] == 0
    # the texts are single-spaced ASCII words ending in "." on every side: no format mark differs in any
    # pair, so every format signal keeps its default direction (silent) and none speaks on a test pair
    marks = ("response_serialized", "role_prefix", "special_tokens", "byte_order_mark", "format_characters",
             "not_nfc", "carriage_returns", "leading_whitespace", "trailing_whitespace", "trailing_line_breaks",
             "nonstandard_spaces", "double_spaces", "html_entities", "literal_escapes", "mojibake",
             "replacement_characters", "wrapped_in_quotes")
    assert report["directions"] == {"response_in_context": 1, "response_repeated_in_split": 1, **dict.fromkeys(marks, 0)}
    assert b["format_marks"]["differ_pairs"] == 0 and b["format_marks"]["structure_only_accuracy"] == 0.5
    assert all(report["direction_evidence"][m] == {"marked_side_chosen": 0, "marked_side_rejected": 0} for m in marks)
    assert set(report["users"]) == {f"user{u:02d}" for u in range(USERS)}
    assert all(u["structure_only_accuracy"] == pytest.approx(0.9) for u in report["users"].values())

    fresh = audit_benchmark(new)["datasets"]["prism_raw"]
    assert fresh["affected_pairs"] == 0 and fresh["structure_only_accuracy"] == 0.5
    assert fresh["test_pairs"] == new.manifest.counts["splits"]["test"]["pairs"]


def _predict_all(method, bench):
    method.setup(MethodEnv(seed=0, show_progress=False))
    method.fit(bench.histories())
    test = bench.pairs_of("test")
    queries, keys = make_queries(test, 0)
    probs = method.predict(queries)
    by_pair = {p.pair_id: p for p in test}
    return [(by_pair[keys[q.query_id].pair_id], keys[q.query_id].chosen_first, pr)
            for q, pr in zip(queries, probs, strict=True)]


def test_leak_probe_reads_the_old_construction_and_flips_coins_on_the_new(prism_dir):
    old = _build(prism_dir, "all-lower")
    probe = load_method("leak-probe")
    assert probe.method_info.tier == "reproduced"
    results = _predict_all(probe, old)
    for pair, chosen_first, p in results:
        right = (p > 0.5) == chosen_first
        if pair.meta["turn"] < TURNS - 1:  # decided by structure: always right, in both orders
            assert right, pair.pair_id
    orders = {}
    for pair, chosen_first, p in results:  # the coin is per pair: both orders agree
        orders.setdefault(pair.pair_id, set()).add((p > 0.5) == chosen_first)
    assert all(len(v) == 1 for v in orders.values())
    n_test = len(old.pairs_of("test"))
    assert probe.usage() == {"queries_decided_by_structure": 2 * n_test * 4 // 5,
                             "queries_decided_by_coin": 2 * n_test // 5}

    new = _build(prism_dir, "opening-disjoint")
    probe = load_method("leak-probe")
    _predict_all(probe, new)
    assert probe.usage()["queries_decided_by_structure"] == 0


def test_leak_probe_sees_only_what_predict_gets(prism_dir):
    """Queries sent one at a time: no within-test signal; only the (empty) history ones are left."""
    old = _build(prism_dir, "all-lower")
    probe = load_method("leak-probe")
    probe.setup(MethodEnv(seed=0, show_progress=False))
    probe.fit(old.histories())
    queries, _ = make_queries(old.pairs_of("test"), 0)
    for q in queries:
        probe.predict([q])
    # alone, a turn-0/1 query still has no history signal (its conversation is wholly in test) and no
    # other query to compare with, so nothing is decided by structure
    assert probe.usage()["queries_decided_by_structure"] == 0


@pytest.mark.parametrize("k,n", [(0, 5), (5, 5), (3, 7), (26, 30), (1, 391)])
def test_clopper_pearson_matches_scipy_binomtest(k, n):
    from scipy.stats import binomtest

    from personalrewardbench.data.audit import clopper_pearson

    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    assert clopper_pearson(k, n) == pytest.approx([ci.low, ci.high], abs=1e-9)
    assert clopper_pearson(0, 0) is None
