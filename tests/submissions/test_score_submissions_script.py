"""scripts/score_submissions.py: finds changed submissions with git, scores them, writes a PR report."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

from personalrewardbench.data import save_benchmark
from personalrewardbench.submissions.template import write_template
from tests.conftest import make_tiny_benchmark

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


@pytest.fixture
def repo(tmp_path):
    """A git repo whose base commit has one submission; the head commit adds one, breaks one, and
    only adds CI results to the old one."""
    repo = tmp_path / "repo"
    subs = repo / "submissions"
    subs.mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    write_template("old-one", subs)
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "base")
    _git(repo, "branch", "base")
    write_template("new-one", subs)
    (subs / "old-one" / "results").mkdir()
    (subs / "old-one" / "results" / "x.json").write_text("{}")
    broken = subs / "broken-one"
    broken.mkdir()
    (broken / "submission.toml").write_text('[submission]\nname = "broken-one"\n')
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "head")
    return repo


def test_changed_submissions_ignores_results_only_changes(script, repo):
    found = script.changed_submissions("base", repo / "submissions", repo)
    assert [p.name for p in found] == ["broken-one", "new-one"]


def test_scores_changed_submissions_and_writes_a_markdown_report(script, repo, tmp_path, capsys):
    bench_dir = save_benchmark(make_tiny_benchmark(), tmp_path / "bench")
    summary = tmp_path / "summary.md"
    rc = script.main(["--base", "base", "--submissions-dir", str(repo / "submissions"), "--dataset", str(bench_dir),
                      "--baseline", "length", "--baseline-results", str(tmp_path / "base-results"),
                      "--summary", str(summary), "--bootstrap", "100", "--quiet"])
    report = summary.read_text()
    assert rc == 1  # the broken submission fails the check
    assert report in capsys.readouterr().out
    assert "| `new-one` | tiny | ok |" in report and "| `new-one-strong` | tiny | ok |" in report
    assert "### `new-one` vs baselines on tiny (same pairs)" in report and "| `length` |" in report
    assert "**`broken-one` on -: failed** (invalid)" in report
    assert "[submission].authors is missing" in report
    assert list((repo / "submissions" / "new-one" / "results" / "tiny").glob("*/*/results.json"))
    assert not (repo / "submissions" / "old-one" / "results" / "tiny").exists()


def test_default_baselines_need_no_llm(script):
    names = script.default_baselines(REPO / "baselines")
    assert "length" in names and "default-judge" not in names
