"""Run folders: round trip, provenance, verify catching tampering, resume, merge, not applicable."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from personalrewardbench.data.schema import content_hash
from personalrewardbench.evaluate import run_evaluation
from personalrewardbench.methods import Method, MethodEnv, MethodError, load_method
from personalrewardbench.results import PredictionLog, ResultsError, read_predictions, read_results, sha256_file
from personalrewardbench.runs import compare_runs, merge_runs, verify_run
from tests.eval.helpers import ConstantMethod, CrashAfter, ProfileMethod, SpyMethod, random_benchmark

BENCH = random_benchmark(n_users=12, n_test=6, seed=1)
TOP_KEYS = {"schema_version", "run_id", "status", "not_applicable_reason", "method", "dataset", "scores", "per_user",
            "cost", "method_usage", "degradation", "provenance", "files"}


def _run(method, out, bench=BENCH, **kw):
    return run_evaluation(method, bench, MethodEnv(seed=kw.pop("seed", 0)), out, show_progress=False, **kw)


def test_round_trip_and_schema(tmp_path):
    res = _run(load_method("length"), tmp_path / "run")
    assert set(res) == TOP_KEYS and read_results(tmp_path / "run") == res
    assert res["method"] == {"name": "length", "config": {"unit": "chars"}, "capabilities": ["pairwise"],
                             "source": "baselines/length", "base_model": None}
    assert res["dataset"]["content_hash"] == BENCH.content_hash and res["dataset"]["n_test_pairs"] == 72
    assert set(res["scores"]) >= {"accuracy", "accuracy_ci95", "accuracy_ci95_users", "user_mean_accuracy",
                                  "user_mean_accuracy_ci95", "position_consistency", "n_judgments", "n_pairs",
                                  "n_users", "n_ties", "n_failed", "bootstrap"}
    assert set(res["cost"]) >= {"llm_calls", "prompt_tokens", "completion_tokens", "cache_hits", "seconds_fit",
                                "seconds_predict", "seconds_total", "tokens_per_1000_judgments",
                                "seconds_per_1000_judgments"}
    assert set(res["provenance"]) >= {"package_version", "git_commit", "command", "python", "platform", "libraries",
                                      "llm_identity", "prompt_template_hashes", "seed", "started_at", "finished_at"}
    assert res["per_user"]["u000"]["n_train"] == 2 and res["per_user"]["u000"]["n_val"] == 1
    preds = read_predictions(tmp_path / "run")
    assert len(preds) == 144 and [p["query_id"] for p in preds] == sorted(p["query_id"] for p in preds)
    assert res["files"]["predictions.jsonl"] == sha256_file(tmp_path / "run" / "predictions.jsonl")
    assert verify_run(tmp_path / "run", BENCH) == []
    assert verify_run(tmp_path / "run") == []


def test_llm_identity_tokens_and_prompt_hashes(tmp_path):
    from personalrewardbench.data.schema import Message
    from personalrewardbench.llm import ScriptedLLM

    class Templated(Method):
        name = "templated"
        capabilities = frozenset({"llm"})
        prompt_templates = {"judge": "Which is better? {first} {second}"}

        def predict(self, queries):
            chats = [[Message("user", f"{q.first} or {q.second}")] for q in queries]
            return [1.0 if s["A"] > s["B"] else 0.0 for s in self.env.llm.choice_logprobs(chats, ["A", "B"])]

    llm = ScriptedLLM(choice_fn=lambda chat, choices: {"A": -0.1, "B": -2.0}, identity="unit")
    res = run_evaluation(Templated(), BENCH, MethodEnv(llm=llm), tmp_path / "r", show_progress=False)
    prov = res["provenance"]
    assert prov["llm_identity"] == "scripted:unit" and res["method"]["base_model"] == "scripted:unit"
    assert prov["prompt_template_hashes"]["judge"] == __import__("hashlib").sha256(
        b"Which is better? {first} {second}").hexdigest()
    assert res["cost"]["llm_calls"] == 144 and res["cost"]["prompt_tokens"] > 0
    assert res["cost"]["tokens_per_1000_judgments"] == pytest.approx(
        1000 * (res["cost"]["prompt_tokens"] + res["cost"]["completion_tokens"]) / 144, abs=0.01)


def _tamper_line(path, n):
    """Flip the first decided prediction (p not 0.5 or null) at or after line ``n``: flipping a decided
    judgment always changes its correctness (a tie set to 0.9 may stay wrong, and the line order
    follows the per-run query secret, so a fixed line may hold a tie)."""
    lines = path.read_text().splitlines()
    n = next(i for i in range(n, len(lines)) if json.loads(lines[i])["p"] not in (0.5, None))
    rec = json.loads(lines[n])
    rec["p"] = 1.0 - rec["p"]
    lines[n] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")


def test_verify_catches_a_changed_prediction_line(tmp_path):
    run = tmp_path / "run"
    _run(load_method("length"), run)
    _tamper_line(run / "predictions.jsonl", 5)
    problems = verify_run(run, BENCH)
    assert any("predictions.jsonl: sha256 differs" in p for p in problems)
    assert any(p.startswith("scores.accuracy:") for p in problems)
    # even with the recorded hash updated, the figures no longer reproduce
    res = json.loads((run / "results.json").read_text())
    res["files"]["predictions.jsonl"] = sha256_file(run / "predictions.jsonl")
    (run / "results.json").write_text(json.dumps(res))
    problems = verify_run(run, BENCH)
    assert problems and all("sha256" not in p for p in problems)
    assert any(p.startswith("per_user.") for p in problems)


def test_verify_catches_a_changed_figure_and_other_benchmark(tmp_path):
    run = tmp_path / "run"
    _run(load_method("random"), run)
    res = json.loads((run / "results.json").read_text())
    res["scores"]["accuracy"] += 0.01
    (run / "results.json").write_text(json.dumps(res))
    problems = verify_run(run, BENCH)
    assert len(problems) == 1 and problems[0].startswith("scores.accuracy: recorded")
    res["scores"]["accuracy"] -= 0.01
    res["per_user"]["u003"]["n_train"] = 7
    (run / "results.json").write_text(json.dumps(res))
    assert verify_run(run, BENCH) == ["per_user.u003.n_train: recorded 7, recomputed 2"]
    other = random_benchmark(n_users=12, n_test=6, seed=2)
    assert any("benchmark version differs" in p for p in verify_run(run, other))


def test_verify_catches_missing_and_foreign_predictions(tmp_path):
    run = tmp_path / "run"
    _run(load_method("length"), run)
    path = run / "predictions.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[1:]) + "\n")
    problems = verify_run(run, BENCH)
    assert any("1 test queries have no prediction" in p for p in problems)
    rec = json.loads(lines[0])
    rec["pair_id"] = "u999-p1"
    path.write_text("\n".join([json.dumps(rec), *lines[1:]]) + "\n")
    assert any("line 1: query" in p for p in verify_run(run, BENCH))


def _judged(folder):
    """The judgments of a run folder without their query ids (which each run keys with its own secret)."""
    return sorted((r["pair_id"], r["user_id"], r["order"], r["p"]) for r in read_predictions(folder))


def test_resume_after_interruption(tmp_path):
    run = tmp_path / "run"
    crashy = CrashAfter()
    crashy.ok_calls = 2
    with pytest.raises(KeyboardInterrupt):
        _run(crashy, run, chunk_size=20)
    assert len(PredictionLog(run / "predictions.jsonl").read()) == 40 and not (run / "results.json").exists()
    with (run / "predictions.jsonl").open("a") as fh:  # a crash in the middle of a write
        fh.write('{"query_id": "abc", "pa')
    again = CrashAfter()
    res = _run(again, run, chunk_size=20)
    assert again.predicted == 144 - 40 and res["cost"]["resumed"]
    fresh = _run(CrashAfter(), tmp_path / "fresh", chunk_size=7)
    assert res["scores"] == fresh["scores"]
    assert _judged(run) == _judged(tmp_path / "fresh")  # query ids differ: each run draws its own secret
    assert verify_run(run, BENCH) == []
    done = CrashAfter()  # everything predicted: a rerun does not call predict
    done.ok_calls = 0
    _run(done, run)
    assert done.calls == 0


def test_resume_refuses_a_different_run(tmp_path):
    _run(ConstantMethod(0.7), tmp_path / "run")
    with pytest.raises(MethodError, match=r"different run \(differs in: config\)"):
        _run(ConstantMethod(0.2), tmp_path / "run")
    res = _run(ConstantMethod(0.2), tmp_path / "run", resume=False)
    assert res["scores"]["accuracy"] == 0.5


@pytest.mark.parametrize("value,extra,match", [(float("nan"), 0, "outside"), (1.5, 0, "outside"),
                                               ("yes", 0, "not a number"), (0.7, 1, "returned 21 predictions")])
def test_bad_predictions_stop_the_run(tmp_path, value, extra, match):
    with pytest.raises(MethodError, match=match):
        _run(ConstantMethod(value, n_extra=extra), tmp_path / "run", chunk_size=20)
    assert not (tmp_path / "run" / "results.json").exists()
    assert PredictionLog(tmp_path / "run" / "predictions.jsonl").read() == []


def test_profile_method_not_applicable_without_profiles(tmp_path):
    res = _run(ProfileMethod(), tmp_path / "run")
    assert res["status"] == "not_applicable" and res["scores"] is None
    assert "needs user profiles" in res["not_applicable_reason"]
    assert verify_run(tmp_path / "run", BENCH) == []
    with_profiles = random_benchmark(n_users=3, n_test=2, profiles=True)
    assert _run(ProfileMethod(), tmp_path / "p", bench=with_profiles)["status"] == "ok"


def test_shards_merge_to_the_unsharded_run(tmp_path):
    whole = _run(load_method("random"), tmp_path / "whole", seed=4)
    shards = [_run(load_method("random"), tmp_path / f"s{i}", shard=(i, 3), seed=4) for i in range(3)]
    assert sum(s["dataset"]["n_users"] for s in shards) == 12
    merged = merge_runs([tmp_path / "s2", tmp_path / "s0", tmp_path / "s1"], tmp_path / "merged")
    assert merged["scores"] == whole["scores"] and merged["per_user"] == whole["per_user"]
    assert _judged(tmp_path / "merged") == _judged(tmp_path / "whole")  # ids differ: each run has its own secret
    assert [m["shard"] for m in merged["provenance"]["merged_from"]] == ["0/3", "1/3", "2/3"]
    assert verify_run(tmp_path / "merged", BENCH) == []
    again = merge_runs([tmp_path / "s0", tmp_path / "s1", tmp_path / "s2"], tmp_path / "merged2")
    assert {k: v for k, v in again.items() if k not in ("run_id", "provenance")} == \
        {k: v for k, v in merged.items() if k not in ("run_id", "provenance")}
    with pytest.raises(ResultsError, match=r"missing \[1\]"):
        merge_runs([tmp_path / "s0", tmp_path / "s2"], tmp_path / "bad")


def test_compare_runs(tmp_path):
    _run(load_method("length"), tmp_path / "a")
    _run(load_method("position"), tmp_path / "b")
    out = compare_runs(tmp_path / "a", tmp_path / "b")
    a, b = read_results(tmp_path / "a"), read_results(tmp_path / "b")
    assert out["difference"] == pytest.approx(a["scores"]["accuracy"] - b["scores"]["accuracy"])
    assert out["n_pairs"] == 72 and 0 <= out["p_value"] <= 1


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunk=st.integers(1, 60), users=st.integers(1, 12))
def test_batch_size_does_not_change_results(tmp_path_factory, chunk, users):
    base = tmp_path_factory.mktemp("b")
    ref = _run(SpyMethod(), base / "ref", n_users=users, chunk_size=1000)
    got = _run(SpyMethod(), base / "got", n_users=users, chunk_size=chunk)
    assert got["scores"] == ref["scores"] and got["per_user"] == ref["per_user"]
    assert _judged(base / "got") == _judged(base / "ref")


def test_users_sample_is_seeded_and_recorded(tmp_path):
    a = _run(load_method("length"), tmp_path / "a", n_users=5, seed=1)
    b = _run(load_method("length"), tmp_path / "b", n_users=5, seed=2)
    assert len(a["dataset"]["selected_users"]) == 5 and a["dataset"]["selected_users"] != b["dataset"]["selected_users"]
    assert a["dataset"]["content_hash"] == BENCH.content_hash  # the benchmark version, not the subset
    changed = replace(BENCH.pairs[0], chosen=BENCH.pairs[0].chosen + " more")
    assert content_hash([changed, *BENCH.pairs[1:]], BENCH.profiles) != BENCH.content_hash


def test_artifacts_saved_and_hashed(tmp_path):
    class Persona(SpyMethod):
        name = "persona"

        def fit(self, histories):
            self.personas = {h.user_id: f"{h.user_id} likes {len(h.train)} things" for h in histories}

        def artifacts(self):
            return self.personas

    res = _run(Persona(), tmp_path / "run", n_users=3)
    saved = json.loads((tmp_path / "run" / "artifacts.json").read_text())
    assert sorted(saved) == res["dataset"]["selected_users"] and saved[sorted(saved)[0]].endswith("likes 2 things")
    assert res["files"]["artifacts.json"] == sha256_file(tmp_path / "run" / "artifacts.json")
    (tmp_path / "run" / "artifacts.json").write_text(json.dumps({**saved, "u000": "edited"}))
    assert any("artifacts.json: sha256 differs" in p for p in verify_run(tmp_path / "run", BENCH))
