"""embed-logreg with the real MiniLM: end to end, personalization, cached embeddings, the per-user solver."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from personalrewardbench import cli
from personalrewardbench.data import save_benchmark
from personalrewardbench.evaluate import make_queries, run_evaluation
from personalrewardbench.methods import MethodEnv, MethodError, load_method
from personalrewardbench.rewardmodel.embeddings import EmbeddingCache
from personalrewardbench.rewardmodel.hierlogreg import HierarchicalLogReg, fit_offset
from tests.rm.conftest import shared_context_benchmark


def _accuracy(method, bench):
    queries, keys = make_queries(bench.pairs_of("test"), seed=0)
    preds = method.predict(queries)
    return float(np.mean([(p > 0.5) == (keys[q.query_id].order == "chosen_first") for q, p in zip(queries, preds,
                                                                                                     strict=True)]))


def test_embed_logreg_runs_end_to_end_and_verifies(tmp_path, capsys):
    bench = shared_context_benchmark(n_users=4, n_train=6, n_val=3, n_test=3)
    folder = tmp_path / "bench"
    save_benchmark(bench, folder)
    env = MethodEnv(seed=0, cache_dir=tmp_path / "cache", show_progress=False)
    out = tmp_path / "run"
    results = run_evaluation(load_method("embed-logreg"), bench, env, out, resamples=100, show_progress=False)
    assert results["status"] == "ok" and results["scores"]["n_judgments"] == 24
    assert results["method"]["base_model"].startswith("embedded-minilm")
    assert cli.main(["verify", str(out), "--dataset", str(folder)]) == 0, capsys.readouterr().out
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    by_pair = {}
    for p in preds:
        by_pair.setdefault(p["pair_id"], []).append(p["p"])
    assert all(abs(a + b - 1.0) < 1e-9 for a, b in by_pair.values())  # antisymmetric features, no intercept


def test_per_user_offsets_learn_what_the_global_model_cannot(tmp_path):
    """Same questions and answers for every user, opposite tastes: global ~ chance, per-user ~ perfect."""
    bench = shared_context_benchmark(n_users=6, n_train=10, n_val=4, n_test=4)
    env = MethodEnv(seed=0, cache_dir=tmp_path, show_progress=False)
    personal = load_method("embed-logreg")
    personal.setup(env)
    personal.fit(bench.histories())
    computed = personal.usage()["embeddings_computed"]
    glob = load_method("embed-logreg-global")
    glob.setup(env)
    glob.fit(bench.histories())
    assert glob.usage()["embeddings_computed"] == 0  # every text came from the disk cache
    assert computed > 0
    acc_personal, acc_global = _accuracy(personal, bench), _accuracy(glob, bench)
    assert acc_personal >= 0.95, personal.usage()
    assert acc_global <= 0.6
    assert personal.usage()["chosen_lam"] is not None and personal.usage()["n_users_with_offset"] == 6


def test_embedding_cache_is_keyed_by_text_and_survives_reopening(tmp_path):
    cache = EmbeddingCache(tmp_path)
    a = cache.embed(["hello world", "a cat", "hello world"])
    assert a.shape == (3, 384) and cache.computed == 2
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(a[0], a[2])
    cache.close()
    again = EmbeddingCache(tmp_path)
    b = again.embed(["a cat", "hello world"])
    assert again.computed == 0 and again.hits == 2
    np.testing.assert_array_equal(b, a[[1, 0]])


def test_offset_solver_matches_the_objective_optimum():
    rng = np.random.default_rng(0)
    X, z, lam = rng.normal(size=(7, 12)), rng.normal(size=7), 2.0
    d = fit_offset(X, z, lam)
    m = z + X @ d
    grad = -X.T @ (1.0 / (1.0 + np.exp(m))) + lam * d  # gradient of sum softplus(-m) + lam/2 |d|^2
    assert np.abs(grad).max() < 1e-6
    assert not fit_offset(X, z, math.inf).any()


def test_hierarchical_model_without_val_uses_defaults_and_unseen_users_get_the_global_model():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 5))
    model = HierarchicalLogReg().fit(X, ["a"] * 20 + ["b"] * 20)
    assert model.C == 1.0 and model.lam == 16.0
    unseen = model.logits(X[:3], ["zzz"] * 3)
    np.testing.assert_allclose(unseen, (X[:3] / model.scale) @ model.w)


def test_bad_grids_are_rejected():
    with pytest.raises(MethodError, match="lam_grid"):
        load_method("embed-logreg", {"lam_grid": []})
