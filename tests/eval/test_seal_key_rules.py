"""Where the seal key comes from (an empty $PRB_SEAL_KEY is an error; CI can require it) and what the seal
covers (query-key.json: replacing the query secret shows as a bad seal naming that file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from personalrewardbench.cli import main
from personalrewardbench.evaluate import run_evaluation
from personalrewardbench.methods import MethodEnv, load_method
from personalrewardbench.query_keys import KeyEntry, write_key_file
from personalrewardbench.seal import SealError, check_seal, load_key
from tests.eval.helpers import random_benchmark

BENCH = random_benchmark(n_users=3, n_test=3, seed=4)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.delenv("PRB_SEAL_KEY", raising=False)
    monkeypatch.delenv("PRB_REQUIRE_SEAL_KEY", raising=False)
    monkeypatch.setenv("PRB_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _run(out: Path) -> dict:
    return run_evaluation(load_method("length"), BENCH, MethodEnv(), out, show_progress=False, resamples=50)


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_seal_key_variable_is_an_error_not_a_fall_back(value: str, cache: Path, tmp_path: Path,
                                                                 monkeypatch) -> None:
    """An undefined GitHub secret expands to "": the run used to be sealed with a throw-away key file."""
    monkeypatch.setenv("PRB_SEAL_KEY", value)
    with pytest.raises(SealError, match="PRB_SEAL_KEY is set but empty"):
        load_key()
    with pytest.raises(SealError, match="PRB_SEAL_KEY is set but empty"):
        _run(tmp_path / "run")
    assert not (tmp_path / "run" / "predictions.jsonl").exists()  # refused before any work
    assert not (cache / "seal.key").exists()


def test_a_required_key_must_come_from_the_environment(cache: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    run = tmp_path / "results" / "run"
    _run(run)  # sealed with this machine's key file
    monkeypatch.setenv("PRB_REQUIRE_SEAL_KEY", "1")
    with pytest.raises(SealError, match="PRB_REQUIRE_SEAL_KEY is set.*PRB_SEAL_KEY.*not set"):
        load_key()
    with pytest.raises(SealError, match="PRB_REQUIRE_SEAL_KEY"):
        _run(tmp_path / "other")
    assert not (tmp_path / "other" / "predictions.jsonl").exists()
    # verify and the board build fail clearly instead of using (or creating) the key file
    assert main(["verify", str(run), "--predictions-only"]) == 1
    assert "PRB_REQUIRE_SEAL_KEY is set" in capsys.readouterr().out
    assert main(["leaderboard", "build", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "site"),
                 "--no-reported", "--no-plots"]) != 0
    assert "PRB_REQUIRE_SEAL_KEY is set" in capsys.readouterr().err
    # with the secret passed, it is the key; the key file is never consulted
    monkeypatch.setenv("PRB_SEAL_KEY", "ci-secret-" + "c" * 40)
    (cache / "seal.key").unlink()
    res = _run(tmp_path / "ci-run")
    assert res["status"] == "ok" and check_seal(tmp_path / "ci-run").ok and not (cache / "seal.key").exists()
    monkeypatch.setenv("PRB_REQUIRE_SEAL_KEY", "maybe")
    with pytest.raises(SealError, match="PRB_REQUIRE_SEAL_KEY='maybe'"):
        load_key()


@pytest.mark.parametrize("workflow,runs", [("score-submissions.yml", "score_submissions.py"),
                                           ("leaderboard.yml", "prb leaderboard build")])
def test_both_workflows_pass_and_require_the_seal_key(workflow: str, runs: str) -> None:
    doc = yaml.safe_load((REPO / ".github" / "workflows" / workflow).read_text())
    steps = [s for job in doc["jobs"].values() for s in job.get("steps", []) if runs in str(s.get("run", ""))]
    assert steps, f"no step of {workflow} runs {runs}"
    for step in steps:
        env = {**next(iter(doc["jobs"].values())).get("env", {}), **step.get("env", {})}
        assert env.get("PRB_SEAL_KEY") == "${{ secrets.PRB_SEAL_KEY }}"
        assert str(env.get("PRB_REQUIRE_SEAL_KEY")) == "1"


def test_the_seal_covers_the_query_secret(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    _run(run)
    assert "query-key.json" in json.loads((run / "seal.json").read_text())["files"]
    original = (run / "query-key.json").read_bytes()
    write_key_file(run, [KeyEntry(b"x" * 32)])  # replaced: every prediction would be "an unknown query"
    check = check_seal(run)
    assert check.status == "bad" and "query-key.json changed after the run was sealed" in check.detail
    assert "query secret" in check.detail and "restore the original" in check.detail
    bench = tmp_path / "bench"
    from personalrewardbench.data import save_benchmark

    save_benchmark(BENCH, bench)
    assert main(["verify", str(run), "--dataset", str(bench)]) == 1
    assert "bad seal" in capsys.readouterr().out
    (run / "query-key.json").unlink()
    assert "removed after sealing" in check_seal(run).detail and "query secret" in check_seal(run).detail
    (run / "query-key.json").write_bytes(original)
    assert check_seal(run).ok
    seal = json.loads((run / "seal.json").read_text())
    seal["seal_version"] = 1  # a folder sealed before the query secret was covered
    (run / "seal.json").write_text(json.dumps(seal))
    assert "older harness" in check_seal(run).detail


def test_scoring_a_submission_without_a_usable_key_fails_before_the_sandbox_starts(tmp_path: Path,
                                                                                  monkeypatch) -> None:
    from personalrewardbench.submissions.scoring import score_submission
    from personalrewardbench.submissions.template import write_template

    folder = write_template("keyless", tmp_path / "submissions")
    monkeypatch.setenv("PRB_REQUIRE_SEAL_KEY", "1")
    outcomes = score_submission(folder, BENCH, tmp_path / "out", show_progress=False)
    assert [(o.status, o.kind) for o in outcomes] == [("failed", "config")]
    assert "no usable seal key" in outcomes[0].error and "PRB_REQUIRE_SEAL_KEY" in outcomes[0].error
    assert not (tmp_path / "out").exists()
