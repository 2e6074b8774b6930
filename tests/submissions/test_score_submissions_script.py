"""scripts/score_submissions.py: finds changed submissions with git, refuses pull requests that change anything
else, scores each submission in the sandbox (a hostile one never stops the next), always writes a PR report."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from personalrewardbench.data import save_benchmark
from personalrewardbench.submissions.template import write_template
from tests.conftest import make_tiny_benchmark
from tests.submissions.conftest import FIXTURES

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("score_submissions", REPO / "scripts" / "score_submissions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=repo, check=True,
                   capture_output=True)


def _copy_hostile(subs: Path, name: str) -> None:
    """The hostile test fixture as submissions/<name>/ (its toml renamed to match the folder)."""
    folder = shutil.copytree(FIXTURES / "hostile", subs / name)
    toml = (folder / "submission.toml").read_text().replace('name = "hostile"', f'name = "{name}"')
    (folder / "submission.toml").write_text(toml)


@pytest.fixture
def repo(tmp_path):
    """A git repo whose base commit has one submission; the head commit adds an honest one, a broken
    one and a hostile one (alphabetically first, so it is scored before the others)."""
    repo = tmp_path / "repo"
    subs = repo / "submissions"
    subs.mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    write_template("old-one", subs)
    (repo / "README.md").write_text("the project\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "base")
    _git(repo, "branch", "base")
    write_template("new-one", subs)
    broken = subs / "broken-one"
    broken.mkdir()
    (broken / "submission.toml").write_text('[submission]\nname = "broken-one"\n')
    _copy_hostile(subs, "aaa-hostile")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "head")
    return repo


def _main(script, repo, tmp_path, *extra):
    bench_dir = save_benchmark(make_tiny_benchmark(), tmp_path / "bench")
    summary = tmp_path / "summary.md"
    rc = script.main(["--repo", str(repo), "--base", "base", "--dataset", str(bench_dir), "--baseline", "length",
                      "--baseline-results", str(tmp_path / "base-results"), "--out", str(tmp_path / "ci-results"),
                      "--summary", str(summary), "--bootstrap", "100", "--quiet", "--memory-limit", "256",
                      "--time-limit", "60", *extra])
    return rc, summary.read_text()


def test_split_changes_allows_only_submission_folders(script):
    names, outside = script.split_changes(["submissions/a/adapter.py", "submissions/b/README.md",
                                           "submissions/a/results/x/results.json", "personalrewardbench/runs.py",
                                           "submissions/top-level-file", ".github/workflows/x.yml"])
    assert names == ["a", "b"]
    assert outside == ["submissions/a/results/x/results.json", "personalrewardbench/runs.py",
                       "submissions/top-level-file", ".github/workflows/x.yml"]


def test_scores_changed_submissions_and_writes_a_markdown_report(script, repo, tmp_path, capsys):
    from personalrewardbench.evaluate import run_evaluation
    from personalrewardbench.methods import MethodEnv, load_method

    rc, report = _main(script, repo, tmp_path)
    assert rc == 1  # the broken and the hostile submissions fail the check
    assert report in capsys.readouterr().out
    # every method of the hostile submission was tried; its attacks failed and were reported
    assert "| <code>aaa-hostile-memory-split</code> | tiny | **FAILED** |" in report
    assert "| <code>aaa-hostile-pipe-deep</code> | tiny | **FAILED** |" in report
    assert "| <code>aaa-hostile-read-results</code> | tiny | ok | 0.0%" in report
    # ... and the honest submission scored after it is unchanged
    assert "| <code>new-one</code> | tiny | ok |" in report and "| <code>new-one-strong</code> | tiny | ok |" in report
    [run] = (tmp_path / "ci-results" / "tiny" / "new-one").glob("*/results.json")
    alone = run_evaluation(load_method(str(repo / "submissions" / "new-one")), make_tiny_benchmark(),
                           MethodEnv(seed=0, show_progress=False), tmp_path / "alone", resamples=100,
                           show_progress=False)
    assert json.loads(run.read_text())["scores"] == alone["scores"]
    assert "### <code>new-one</code> vs baselines on tiny (same pairs)" in report and "| <code>length</code> |" in report
    assert "**<code>broken-one</code> on -: failed** (invalid)" in report
    assert "[submission].authors is missing" in report
    # nothing is written into the pull request's folders
    assert subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=repo, capture_output=True,
                          text=True).stdout == ""


def test_a_pull_request_changing_other_files_is_reported_not_scored(script, repo, tmp_path):
    (repo / "README.md").write_text("changed by the pull request\n")
    (repo / "submissions" / "new-one" / "results").mkdir()
    (repo / "submissions" / "new-one" / "results" / "results.json").write_text("{}")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "also edits the project")
    rc, report = _main(script, repo, tmp_path)
    assert rc == 1
    assert "Not scored: this pull request changes files outside submissions/&lt;name&gt;/" not in report
    assert "Not scored: this pull request changes files outside submissions/<name>/" in report
    assert "README.md" in report and "submissions/new-one/results/results.json" in report
    assert "No submissions were scored." in report and not (tmp_path / "ci-results").exists()


def test_the_job_always_ends_with_a_summary(script, repo, tmp_path, monkeypatch):
    import personalrewardbench.submissions.scoring as scoring

    calls = []

    def explode(folder, *a, **k):
        calls.append(Path(folder).name)
        if Path(folder).name == "aaa-hostile":
            raise RuntimeError("something no one expected")
        return real(folder, *a, **k)

    real = scoring.score_submission
    monkeypatch.setattr(scoring, "score_submission", explode)
    rc, report = _main(script, repo, tmp_path)
    assert rc == 1 and calls == ["aaa-hostile", "new-one"]
    assert "internal error: RuntimeError: something no one expected" in report
    assert "| <code>new-one</code> | tiny | ok |" in report


def test_default_baselines_need_no_llm(script):
    names = script.default_baselines(REPO / "baselines")
    assert "length" in names and "default-judge" not in names


def test_a_missing_required_seal_key_stops_the_job_before_anything_runs(script, repo, tmp_path, monkeypatch):
    """CI sets PRB_REQUIRE_SEAL_KEY: an undefined secret must not score (and seal) with a throw-away key file."""
    monkeypatch.setenv("PRB_REQUIRE_SEAL_KEY", "1")
    monkeypatch.delenv("PRB_SEAL_KEY", raising=False)
    monkeypatch.setenv("PRB_CACHE_DIR", str(tmp_path / "cache"))
    rc, report = _main(script, repo, tmp_path)
    assert rc == 1
    assert "The scoring job stopped early: SealError: PRB_REQUIRE_SEAL_KEY is set" in report
    assert not (tmp_path / "ci-results").exists() and not (tmp_path / "cache" / "seal.key").exists()
