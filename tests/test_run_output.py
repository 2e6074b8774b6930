"""`prb run` writes only into its own gitignored folder, and a rerun leaves finished results byte-identical."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from personalrewardbench.cli import main

REPO = Path(__file__).resolve().parents[1]


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_default_output_folder_and_byte_identical_rerun(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("PRB_CACHE_DIR", str(tmp_path / ".prb-cache"))
    argv = ["run", "--methods", "random,length", "--bootstrap", "50", "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert {p.name for p in tmp_path.iterdir()} <= {"prb-output", ".prb-cache"}
    results, site = tmp_path / "prb-output" / "results", tmp_path / "prb-output" / "site"
    runs = sorted(results.rglob("results.json"))
    assert [json.loads(p.read_text())["method"]["name"] for p in runs] == ["length", "random"]
    assert (site / "index.html").is_file()
    assert "results in prb-output/results/, site in prb-output/site/" in out
    assert f"site: {(site / 'index.html').resolve().as_uri()}" in out

    before = _tree(tmp_path / "prb-output")
    mtimes = {p: p.stat().st_mtime_ns for p in results.rglob("*") if p.is_file()}
    assert main(argv) == 0  # the same command again: finished runs are reused as they are
    assert _tree(tmp_path / "prb-output") == before
    assert {p: p.stat().st_mtime_ns for p in results.rglob("*") if p.is_file()} == mtimes


def test_the_output_folder_is_ignored_by_git() -> None:
    proc = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", "prb-output/results/x/results.json"],
                          capture_output=True)
    if proc.returncode == 128:  # not a git checkout (e.g. an sdist): nothing to check
        return
    assert proc.returncode == 0, "prb-output/ must be in .gitignore"
