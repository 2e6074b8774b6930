"""Where a site may be written: never inside, at or around a results root (its data/ copies of
results.json would read as unsealed runs); a site already lying in a results tree is skipped, not read
as runs; the default --out (the tracked leaderboard/site) is said so; what a local build adds to the
tracked site is gitignored."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from personalrewardbench.cli import main
from personalrewardbench.leaderboard.build import SiteError, build_site
from personalrewardbench.leaderboard.verification import collect_runs
from personalrewardbench.methods import load_method
from tests.leaderboard.conftest import evaluate_into, mini_benchmark

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def one_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results root with one sealed `length` run on a built 4-user benchmark."""
    from personalrewardbench.data import save_benchmark

    root = tmp_path_factory.mktemp("placement")
    bench = mini_benchmark(n_users=4, n_test=2)
    spec = str(save_benchmark(bench, root / "bench"))
    evaluate_into(root / "results", load_method("length"), bench, spec=spec)
    return root / "results"


@pytest.mark.parametrize("where,how", [("inside", "lies inside"), ("equal", "is"), ("around", "holds")])
def test_out_at_inside_or_around_a_results_root_is_refused(one_run: Path, tmp_path: Path, where: str,
                                                          how: str) -> None:
    results = shutil.copytree(one_run, tmp_path / "a" / "results")
    out = {"inside": results / "site", "equal": results, "around": tmp_path / "a"}[where]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(SiteError, match=f"--out {out} {how} the results folder --results {results}"):
        build_site([results], out, include_reported=False, plots=False)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written


def test_out_inside_through_a_link_is_refused(one_run: Path, tmp_path: Path) -> None:
    results = shutil.copytree(one_run, tmp_path / "results")
    (tmp_path / "alias").symlink_to(results, target_is_directory=True)
    with pytest.raises(SiteError, match="lies inside the results folder"):
        build_site([results], tmp_path / "alias" / "site", include_reported=False, plots=False)


def test_cli_refuses_in_one_line(one_run: Path, tmp_path: Path, capsys) -> None:
    results = shutil.copytree(one_run, tmp_path / "results")
    assert main(["leaderboard", "build", "--results", str(results), "--out", str(results / "site"),
                 "--no-plots", "--no-reported"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"prb: error: --out {results / 'site'} lies inside the results folder") and "\n" not in err
    assert "--out my-site" in err and not (results / "site").exists()


def test_prb_run_refuses_a_site_inside_its_results_before_any_work(tmp_path: Path, capsys) -> None:
    out = tmp_path / "r"
    assert main(["run", "--dataset", "synthetic", "--methods", "length", "--out", str(out), "--site",
                 str(out / "site"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"--site {out / 'site'} lies inside the results folder --out {out}" in err
    assert not out.exists()


def test_a_site_inside_a_results_tree_holds_no_runs_to_misread(one_run: Path, tmp_path: Path, capsys) -> None:
    """A site copied into a results root: its data/ copies are named run-results.json, so `prb verify` and
    the board see only the real run."""
    results = shutil.copytree(one_run, tmp_path / "results")
    build_site([results], tmp_path / "site", include_reported=False, plots=False)
    assert list((tmp_path / "site" / "data").rglob("run-results.json"))  # the copies exist, under their own name
    assert not list((tmp_path / "site").rglob("results.json"))
    shutil.copytree(tmp_path / "site", results / "old-site")
    runs, skipped = collect_runs([results])
    assert [r.method for r in runs] == ["length"] and skipped == []
    assert main(["verify", str(results)]) == 0
    assert "1 of 1 results verified" in capsys.readouterr().out


def test_a_site_marker_hides_no_run(one_run: Path, tmp_path: Path, capsys) -> None:
    """An empty .prb-site file next to a tampered run must not make the walks pass the run by."""
    results = shutil.copytree(one_run, tmp_path / "results")
    [run] = [p.parent for p in results.rglob("results.json")]
    hidden = tmp_path / "results" / "x" / run.relative_to(results)
    shutil.copytree(run, hidden)
    rec = json.loads((hidden / "results.json").read_text())
    rec["scores"]["accuracy"] = 0.99
    (hidden / "results.json").write_text(json.dumps(rec))
    (tmp_path / "results" / "x" / ".prb-site").write_text("")
    (results / ".prb-site").write_text("")
    assert main(["verify", str(results)]) == 1
    out = capsys.readouterr().out
    assert "1 of 2 results verified" in out and "scores.accuracy: recorded 0.99" in out
    runs, skipped = collect_runs([results])
    assert len(runs) == 1 and [Path(s.path) for s in skipped] == [hidden / "results.json"]


def test_default_out_says_it_wrote_the_tracked_site(one_run: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    """In a checkout whose leaderboard/site/.prb-site is tracked by git the default --out is the tracked
    site, and it says so; in any other folder it says where it wrote, never "tracked"."""
    import shutil
    import subprocess

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    monkeypatch.chdir(tmp_path)
    assert main(["leaderboard", "build", "--results", str(one_run), "--no-plots", "--no-reported"]) == 0
    out = capsys.readouterr().out
    assert "tracked site" not in out and f"wrote the site into {(tmp_path / 'leaderboard' / 'site').resolve()}/" in out
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "add", "leaderboard/site/.prb-site"], cwd=tmp_path, check=True)
    assert main(["leaderboard", "build", "--results", str(one_run), "--no-plots", "--no-reported"]) == 0
    out = capsys.readouterr().out
    assert "wrote the repository's tracked site leaderboard/site/" in out and "--out DIR" in out
    assert (tmp_path / "leaderboard" / "site" / "index.html").is_file()
    assert main(["leaderboard", "build", "--results", str(one_run), "--out", "my-site", "--no-plots",
                 "--no-reported"]) == 0
    assert "tracked site" not in capsys.readouterr().out


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs a git checkout")
def test_what_a_local_build_adds_to_the_tracked_site_is_ignored() -> None:
    """data/, plots/ and new method pages of a local build are gitignored; the site's own files are not
    (CI rebuilds and deploys the site and commits nothing)."""
    ignored = ["leaderboard/site/data/synthetic-sample/length/verified-x/results.json",
               "leaderboard/site/plots/synthetic-sample-accuracy.png", "leaderboard/site/methods/my-new-method.html"]
    kept = ["leaderboard/site/index.html", "leaderboard/site/leaderboard.json", "leaderboard/site/assets/site.css"]
    proc = subprocess.run(["git", "check-ignore", "--no-index", *ignored, *kept], cwd=REPO, capture_output=True,
                          text=True)
    assert sorted(proc.stdout.split()) == sorted(ignored)
