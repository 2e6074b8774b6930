"""vanilla-rm, bt-rm, bt-rm-persona end to end through the evaluator with the real MiniLM; `prb verify`."""

from __future__ import annotations

import json

import pytest

from personalrewardbench import cli
from personalrewardbench.data import save_benchmark
from personalrewardbench.evaluate import run_evaluation
from personalrewardbench.methods import Method, MethodEnv, MethodError, load_method
from tests.conftest import make_tiny_benchmark

FAST_BT = {"epochs": 1, "batch_size": 8, "max_length": 48, "score_batch_size": 16}


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory):
    bench = make_tiny_benchmark(n_users=3, n_train=4, n_val=2, n_test=2)
    folder = tmp_path_factory.mktemp("bench") / "tiny"
    save_benchmark(bench, folder)
    return bench, folder


def _run(name, config, bench, tmp_path, run="run", cache="cache", **env_kw):
    method = load_method(name, config)
    env = MethodEnv(seed=0, cache_dir=tmp_path / cache, show_progress=False, **env_kw)
    out = tmp_path / run
    results = run_evaluation(method, bench, env, out, resamples=100, show_progress=False)
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    return results, preds, out


def _verify(out, folder, capsys):
    assert cli.main(["verify", str(out), "--dataset", str(folder)]) == 0, capsys.readouterr().out


def test_vanilla_rm_default_runs_and_verifies(bench_dir, tmp_path, capsys):
    bench, folder = bench_dir
    results, preds, out = _run("vanilla-rm", {"max_length": 48}, bench, tmp_path)
    assert results["status"] == "ok" and len(preds) == 12
    assert all(0.0 < p["p"] < 1.0 for p in preds)
    assert results["method"]["base_model"].startswith("embedded-minilm")
    assert results["method_usage"]["untrained_head"] is True
    # Both orders of a pair get complementary probabilities (one score per response).
    by_pair = {}
    for p in preds:
        by_pair.setdefault(p["pair_id"], []).append(p["p"])
    assert all(abs(a + b - 1.0) < 1e-9 for a, b in by_pair.values())
    _verify(out, folder, capsys)


def test_bt_rm_trains_reuses_its_checkpoint_and_verifies(bench_dir, tmp_path, capsys):
    bench, folder = bench_dir
    r1, p1, out1 = _run("bt-rm", FAST_BT, bench, tmp_path, run="run1")
    training = r1["method_usage"]["training"]
    assert training["reused_checkpoint"] is False and training["n_train"] == 12 and training["n_val"] == 6
    assert "val_loss" in training["history"][0]
    _verify(out1, folder, capsys)
    r2, p2, _ = _run("bt-rm", FAST_BT, bench, tmp_path, run="run2")
    assert r2["method_usage"]["training"]["reused_checkpoint"] is True
    # Query ids are keyed by each run's own secret, so match predictions by (pair, order).
    by_pair = {(a["pair_id"], a["order"]): round(a["p"], 6) for a in p1}
    assert by_pair == {(b["pair_id"], b["order"]): round(b["p"], 6) for b in p2}


def _sme_artifacts(users):
    return {u: (f"Persona:\n{u} values {'detail' if u.endswith(('0', '2')) else 'brevity'} above all.\n\n"
                "Demos (1; 1 with verified reasoning, 0 labeled only):\n- x (First preferred, with reasoning)\n"
                "Chosen candidate: 0 (validation accuracy 100.0%; 1 candidate(s) scored in the last search)")
            for u in users}


def test_bt_rm_persona_from_a_synthesizeme_results_folder(bench_dir, tmp_path, capsys):
    bench, folder = bench_dir
    sme_run = tmp_path / "results" / "tiny" / "synthesizeme" / "s0-abc"
    sme_run.mkdir(parents=True)
    (sme_run / "artifacts.json").write_text(json.dumps(_sme_artifacts(bench.user_ids())))
    cfg = {**FAST_BT, "finetune": "lora", "lr": 1e-3, "persona_source": str(sme_run.parent)}
    results, preds, out = _run("bt-rm-persona", cfg, bench, tmp_path)
    assert results["method"]["name"] == "bt-rm-persona"
    assert "llm" not in results["method"]["capabilities"] and "personalized" in results["method"]["capabilities"]
    saved = json.loads((out / "artifacts.json").read_text())
    assert saved == {u: f"{u} values {'detail' if u.endswith(('0', '2')) else 'brevity'} above all."
                     for u in bench.user_ids()}
    _verify(out, folder, capsys)
    # The persona is part of the model input: the same query scored for another persona differs.
    method = load_method("bt-rm-persona", cfg)
    method.setup(MethodEnv(cache_dir=tmp_path / "cache", show_progress=False))
    method.fit(bench.histories())  # reuses the checkpoint
    assert method.usage()["training"]["reused_checkpoint"] is True
    from personalrewardbench.data.schema import Message, Query

    q = [Query("a", u, (Message("user", "Same question?"),), "A long detailed answer here.", "Short.")
         for u in ("user0", "user1")]
    pa, pb = method.predict(q)
    assert pa != pb


def test_bt_rm_persona_errors_are_clear(bench_dir, tmp_path):
    bench, _ = bench_dir
    method = load_method("bt-rm-persona", FAST_BT)
    method.setup(MethodEnv(cache_dir=tmp_path, show_progress=False))
    with pytest.raises(MethodError, match="persona_source"):
        method.fit(bench.histories())
    partial = tmp_path / "artifacts.json"
    partial.write_text(json.dumps(_sme_artifacts(["user0"])))
    method = load_method("bt-rm-persona", {**FAST_BT, "persona_source": str(partial)})
    method.setup(MethodEnv(cache_dir=tmp_path, show_progress=False))
    with pytest.raises(MethodError, match=r"2 users have no persona"):
        method.fit(bench.histories())
    with pytest.raises(MethodError, match="no artifacts.json"):
        load_method("bt-rm-persona", {"persona_source": str(tmp_path / "nowhere")}).fit(bench.histories())
    with pytest.raises(MethodError, match="finetune"):
        load_method("bt-rm", {"finetune": "qlora"})


def test_bt_rm_persona_computes_personas_with_the_persona_method(bench_dir, tmp_path, monkeypatch):
    """Without persona_source the personas come from running the persona method (here a stand-in
    for SynthesizeMe that returns artifacts in its format, so no LLM has to run)."""
    bench, _ = bench_dir
    import personalrewardbench.methods as registry

    seen = {}

    class StandIn(Method):
        def fit(self, histories):
            seen["users"] = [h.user_id for h in histories]
            seen["llm"] = self.env.llm

        def predict(self, queries):
            return [0.5] * len(queries)

        def artifacts(self):
            return _sme_artifacts(seen["users"])

    real = registry.load_method
    monkeypatch.setattr(registry, "load_method", lambda spec, config=None: StandIn() if spec == "synthesizeme"
                        else real(spec, config))
    method = real("bt-rm-persona", {**FAST_BT, "finetune": "lora"})
    assert "llm" in method.capabilities
    method.setup(MethodEnv(cache_dir=tmp_path, show_progress=False, llm="an-llm"))
    method._prepare_personas(bench.histories())  # the first step of fit (training is tested above)
    assert seen == {"users": bench.user_ids(), "llm": "an-llm"}
    assert set(method.artifacts()) == set(bench.user_ids())
