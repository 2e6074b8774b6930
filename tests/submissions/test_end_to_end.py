"""The whole path: the example submission scored in the sandbox, compared with a baseline, verified;
tampering with one prediction line or one figure makes `prb verify` fail; a failing adapter leaves no score."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from personalrewardbench.cli import main as prb
from personalrewardbench.data import save_benchmark
from personalrewardbench.results import sha256_file
from personalrewardbench.submissions.scoring import score_submission
from tests.conftest import make_tiny_benchmark
from tests.submissions.conftest import MISBEHAVING

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "submissions" / "embed-direction"


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """The example submission scored once through `prb submission score` on a saved tiny benchmark."""
    tmp = tmp_path_factory.mktemp("e2e")
    bench_dir = save_benchmark(make_tiny_benchmark(), tmp / "bench")
    argv = ["submission", "score", str(EXAMPLE), "--dataset", str(bench_dir), "--method", "embed-direction",
            "--out", str(tmp / "results"), "--baseline", "length", "--baseline-results", str(tmp / "base"),
            "--bootstrap", "200", "--quiet"]
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = prb(argv)
    runs = sorted((tmp / "results").rglob("results.json"))
    return rc, buf.getvalue(), bench_dir, [r.parent for r in runs], tmp


def test_example_submission_scores_in_the_sandbox(scored):
    rc, report, _, runs, _ = scored
    assert rc == 0, report
    assert len(runs) == 1
    res = json.loads((runs[0] / "results.json").read_text())
    assert res["status"] == "ok" and res["method"]["name"] == "embed-direction"
    assert "tier" not in res["method"]  # the board decides it from where the run sits; this one would be local
    assert res["method"]["config"] == {"prior_weight": 8.0, "scale": 20.0, "with_context": False, "personalize": True}
    assert res["method_usage"]["sandbox"]["mode"] == "bwrap"
    assert res["scores"]["n_judgments"] == 18
    # the console report, plain text: the score, the paired difference with the baseline on the same pairs,
    # where the runs were written, and no Markdown/HTML escapes
    assert re.search(r"^embed-direction +tiny +ok +", report, re.M), report
    assert "embed-direction vs baselines on tiny (same pairs;" in report
    assert re.search(r"^  length: .* difference [+-]\d+\.\d \[95% CI pairs", report, re.M), report
    tmp = scored[4]
    assert f"embed-direction on tiny: {runs[0]}" in report
    assert f"length on tiny: {tmp / 'base' / 'tiny' / 'length'}/" in report
    assert "&#" not in report and "<code>" not in report and "|" not in report


def _verify(run: Path, bench_dir: Path, capsys) -> tuple[int, str]:
    capsys.readouterr()
    rc = prb(["verify", str(run), "--dataset", str(bench_dir)])
    return rc, capsys.readouterr().out


def test_verify_passes_then_fails_on_tampering(scored, tmp_path, capsys):
    _, _, bench_dir, runs, _ = scored
    rc, out = _verify(runs[0], bench_dir, capsys)
    assert rc == 0, out

    # one prediction line changed
    t1 = shutil.copytree(runs[0], tmp_path / "t1")
    lines = (t1 / "predictions.jsonl").read_text().splitlines()
    rec = json.loads(lines[0])
    rec["p"] = 0.9 if rec["p"] is None or rec["p"] <= 0.5 else 0.1
    lines[0] = json.dumps(rec)
    (t1 / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    rc, out = _verify(t1, bench_dir, capsys)
    assert rc == 1 and "FAIL" in out and "predictions.jsonl: sha256 differs" in out

    # ... even when the tamperer also updates the recorded file hash: the figures no longer reproduce
    res = json.loads((t1 / "results.json").read_text())
    res["files"]["predictions.jsonl"] = sha256_file(t1 / "predictions.jsonl")
    (t1 / "results.json").write_text(json.dumps(res))
    rc, out = _verify(t1, bench_dir, capsys)
    assert rc == 1 and "scores" in out

    # one figure in results.json changed
    t2 = shutil.copytree(runs[0], tmp_path / "t2")
    res = json.loads((t2 / "results.json").read_text())
    res["scores"]["accuracy"] = round(res["scores"]["accuracy"] + 0.01, 6)
    (t2 / "results.json").write_text(json.dumps(res))
    rc, out = _verify(t2, bench_dir, capsys)
    assert rc == 1 and "scores.accuracy" in out


def test_failing_adapter_gets_a_report_and_no_score(tmp_path, capsys):
    bench_dir = save_benchmark(make_tiny_benchmark(), tmp_path / "bench")
    rc = prb(["submission", "score", str(MISBEHAVING), "--dataset", str(bench_dir), "--method", "misbehaving-nan",
              "--out", str(tmp_path / "results"), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 1
    assert re.search(r"^misbehaving-nan +tiny +FAILED", out, re.M) and "nan (not finite)" in out
    assert not list((tmp_path / "results").rglob("*.json*"))


def test_failure_after_some_chunks_leaves_no_partial_run(tmp_path):
    bench = make_tiny_benchmark()
    [outcome] = score_submission(MISBEHAVING, bench, tmp_path / "results", names=["misbehaving-fail-second-call"],
                                 chunk_size=4, resamples=50, show_progress=False)
    assert outcome.failed and outcome.kind == "crash-exception"
    assert "RuntimeError: second chunk went wrong" in outcome.error
    # the adapter's traceback: its own frames and the exception line, none of the harness's
    assert 'adapter.py", line' in outcome.error and "in predict" in outcome.error, outcome.error
    assert "worker.py" not in outcome.error and "methods.py" not in outcome.error, outcome.error
    assert not list((tmp_path / "results").rglob("*.json*"))  # the first chunk's predictions are gone too


def test_results_go_outside_the_submission_folder(tmp_path, monkeypatch, capsys):
    from personalrewardbench.submissions.template import write_template

    folder = write_template("outside", tmp_path / "submissions")
    bench_dir = save_benchmark(make_tiny_benchmark(), tmp_path / "bench")
    monkeypatch.chdir(tmp_path)
    assert prb(["submission", "score", str(folder), "--dataset", str(bench_dir), "--method", "outside",
                "--bootstrap", "50", "--quiet"]) == 0
    assert list((tmp_path / "results" / "submissions" / "tiny" / "outside").glob("*/results.json"))
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "adapter.py", "submission.toml"]
    rc = prb(["submission", "score", str(folder), "--dataset", str(bench_dir), "--out", str(folder / "results"),
              "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("prb: error: --out ") and "is inside the submission folder" in err
    assert not (folder / "results").exists()


def test_verify_needs_the_runs_query_secret(scored, tmp_path, capsys):
    _, _, bench_dir, runs, _ = scored
    t = shutil.copytree(runs[0], tmp_path / "nokey")
    (t / "query-key.json").unlink()
    rc, out = _verify(t, bench_dir, capsys)
    assert rc == 1 and "query-key.json: missing" in out
    other = shutil.copytree(runs[0], tmp_path / "otherkey")
    from personalrewardbench.query_keys import KeyEntry, new_secret, write_key_file

    write_key_file(other, [KeyEntry(new_secret())])  # another secret: none of the ids match
    rc, out = _verify(other, bench_dir, capsys)
    assert rc == 1 and "is not a query of this run" in out
