"""The synthetic sample benchmark: published schema, labeled synthetic, real per-user signal, no shortcut."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from personalrewardbench.data import load_benchmark
from personalrewardbench.data.synthetic import (
    DIMENSIONS,
    NAME,
    planted_preferences,
    sample_benchmark,
    sample_rows,
)

HUB_COLUMNS = {"user_id", "conversation_id", "context", "chosen", "rejected", "split", "flip", "turns", "type"}


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return sample_rows()


def test_rows_are_in_the_published_schema(rows: list[dict]) -> None:
    for r in rows:
        assert HUB_COLUMNS <= set(r)
        assert r["split"] in ("train", "val", "test") and isinstance(r["flip"], bool)
        assert r["chosen"]["role"] == r["rejected"]["role"] == "model"
        assert r["chosen"]["content"] != r["rejected"]["content"]
        assert r["context"][-1]["role"] == "user" and all(m["role"] in ("user", "assistant") for m in r["context"])
        assert r["turns"] == sum(m["role"] == "user" for m in r["context"])
    assert len({r["conversation_id"] for r in rows}) == len(rows)
    by_user = defaultdict(set)
    for r in rows:
        by_user[r["user_id"]].add(r["split"])
    assert len(by_user) == 40 and all(s == {"train", "val", "test"} for s in by_user.values())


def test_deterministic_and_labeled_synthetic(rows: list[dict]) -> None:
    assert sample_rows() == rows
    assert sample_rows(seed=1) != rows
    bench = load_benchmark("synthetic")
    assert bench.name == NAME == "synthetic-sample" and bench.manifest.synthetic
    assert bench.content_hash == sample_benchmark().content_hash
    assert bench.manifest.sources[0]["kind"] == "synthetic"
    assert not bench.has_profiles()
    counts = bench.manifest.counts
    assert counts["users"] == 40 and counts["pairs"] == len(rows)
    assert sum(p.split == "test" for p in bench.pairs) == 40 * 8


def test_planted_preferences_are_balanced() -> None:
    prefs = planted_preferences(0, 20)
    for d in DIMENSIONS:
        signs = [w[d] > 0 for w in prefs.values() if max(w, key=lambda k: abs(w[k])) == d]
        assert len(signs) == 4 and sum(signs) == 2  # half want the style, half its opposite


def test_shortcuts_do_not_solve_it(rows: list[dict]) -> None:
    longer = [len(r["chosen"]["content"]) > len(r["rejected"]["content"]) for r in rows]
    assert 0.4 <= np.mean(longer) <= 0.6
    assert 0.35 <= np.mean([r["flip"] for r in rows]) <= 0.65


def _features(vec, r: dict) -> np.ndarray:
    return (vec.transform([r["chosen"]["content"]]) - vec.transform([r["rejected"]["content"]])).toarray()[0]


def test_a_personalized_learner_finds_signal_a_global_one_does_not(rows: list[dict]) -> None:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = CountVectorizer(binary=True).fit([r[k]["content"] for r in rows for k in ("chosen", "rejected")])
    X = {id(r): _features(vec, r) for r in rows}

    def fit(train: list[dict]) -> LogisticRegression:
        xs = [X[id(r)] for r in train] + [-X[id(r)] for r in train]
        return LogisticRegression(C=1.0, max_iter=2000).fit(np.array(xs), [1] * len(train) + [0] * len(train))

    def accuracy(model: LogisticRegression, test: list[dict]) -> float:
        return float(np.mean(model.predict(np.array([X[id(r)] for r in test])) == 1))

    by_user = defaultdict(list)
    for r in rows:
        by_user[r["user_id"]].append(r)
    personal = [accuracy(fit([r for r in rs if r["split"] != "test"]), [r for r in rs if r["split"] == "test"])
                for rs in by_user.values()]
    global_model = fit([r for r in rows if r["split"] != "test"])
    pooled = accuracy(global_model, [r for r in rows if r["split"] == "test"])
    assert np.mean(personal) >= 0.75, personal
    assert pooled <= 0.65
    assert np.mean(personal) - pooled >= 0.15


@pytest.mark.slow
def test_default_sample_separates_a_personalized_method_from_the_shortcuts(tmp_path) -> None:
    """What `prb run` promises on the default sample (real MiniLM, the harness's own scorer): the
    embedded-MiniLM per-user method's 95% CI over pairs lies above every shortcut's; over users, 40
    users are too few for a bootstrap (intervals.MIN_BOOTSTRAP_UNITS = 50), so both sides get the
    conservative Wilson score interval and only "above chance" is promised: the learner's lies above
    50% and every shortcut's contains it."""
    from personalrewardbench.evaluate import run_evaluation
    from personalrewardbench.methods import MethodEnv, load_method

    bench = sample_benchmark()
    scores = {}
    for name in ("embed-logreg", "random", "position", "length"):
        env = MethodEnv(seed=0, show_progress=False, cache_dir=tmp_path / "cache")
        scores[name] = run_evaluation(load_method(name), bench, env, tmp_path / name, show_progress=False)["scores"]
    learned = scores.pop("embed-logreg")
    assert learned["n_pairs"] == 320
    for name, s in scores.items():
        assert learned["accuracy_ci95"][0] > s["accuracy_ci95"][1], (name, learned["accuracy_ci95"], s)
        assert s["accuracy_ci95_users"][0] <= 0.5 <= s["accuracy_ci95_users"][1], (name, s)
    assert learned["ci_kind"]["accuracy_ci95_users"] == "wilson", learned["ci_kind"]
    assert learned["accuracy_ci95_users"][0] > 0.5, learned
