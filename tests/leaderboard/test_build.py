"""`prb leaderboard build` without a browser: determinism, bad input, escaping, exports, ties."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from personalrewardbench.cli import main
from personalrewardbench.leaderboard.build import SiteError, build_site
from personalrewardbench.leaderboard.collect import SchemaProblem, check_results, collect_runs
from personalrewardbench.leaderboard.render import safe_url
from tests.leaderboard.conftest import write_results, write_standard_results


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_rebuild_is_byte_identical(standard_site: tuple[Path, Path], tmp_path: Path) -> None:
    # same results written in another place, built into another folder: the same bytes
    results_dir = write_standard_results(tmp_path)
    first = _files(standard_site[1])
    a = build_site([results_dir], tmp_path / "a", include_reported=False)
    fa = _files(tmp_path / "a")
    assert fa == first
    assert {"index.html", "leaderboard.csv", "leaderboard.json", "leaderboard.md",
            "plots/chatbot_arena-accuracy.png", "plots/chatbot_arena-accuracy.svg",
            "methods/synthesizeme.html"} <= set(fa)
    assert b"<dc:date>" not in fa["plots/chatbot_arena-cost.svg"]
    # rebuilding in place changes nothing
    build_site([results_dir], tmp_path / "a", include_reported=False)
    assert _files(tmp_path / "a") == fa
    # a vanished run's files are removed on the next build
    for p in (results_dir / "chatbot_arena" / "synthesizeme").rglob("*"):
        if p.is_file():
            p.unlink()
    c = build_site([results_dir], tmp_path / "a", include_reported=False, plots=False)
    assert not (tmp_path / "a" / "data" / "chatbot_arena" / "synthesizeme").exists()
    assert not (tmp_path / "a" / "plots").exists()
    assert set(c.files) < set(a.files)


def test_bad_schema_results_are_skipped_and_named(results_dir: Path, tmp_path: Path, capsys) -> None:
    bad = write_results(results_dir, "chatbot_arena", "percent-method", skill=0.6)
    data = json.loads((bad / "results.json").read_text())
    data["scores"]["accuracy"] = 61.5  # a percentage, not a fraction
    (bad / "results.json").write_text(json.dumps(data))
    broken = results_dir / "chatbot_arena" / "broken" / "run1"
    broken.mkdir(parents=True)
    (broken / "results.json").write_text("{not json")
    out = tmp_path / "site"
    rc = main(["leaderboard", "build", "--results", str(results_dir), "--out", str(out), "--no-reported", "--no-plots"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "percent-method" in err and "scores.accuracy" in err and "broken" in err
    html = (out / "index.html").read_text()
    assert "Skipped results files" in html and "percent-method" in html and "broken/run1/results.json" in html
    runs, skipped = collect_runs([results_dir])
    assert {r.method for r in runs} == {"random", "length", "default-judge", "synthesizeme", "demographics"}
    assert len(skipped) == 2
    assert json.loads((out / "leaderboard.json").read_text())["skipped_results"][0]["path"].endswith("results.json")


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.pop("schema_version"), "schema_version"),
    (lambda d: d["scores"].update(accuracy_ci95=[0.7, 0.6]), "accuracy_ci95"),
    (lambda d: d["scores"].update(accuracy=float("nan")), "scores.accuracy"),
    (lambda d: d["method"].update(tier="reported"), "method.tier"),
    (lambda d: d["per_user"]["user00"].update(n_train=-1), "per_user.user00.n_train"),
    (lambda d: d.update(status="done"), "status"),
])
def test_check_results_names_the_field(tmp_path: Path, mutate, field: str) -> None:
    folder = write_results(tmp_path, "prism", "m", skill=0.6)
    data = json.loads((folder / "results.json").read_text())
    check_results(data)
    mutate(data)
    with pytest.raises(SchemaProblem, match=re.escape(field)):
        check_results(data)


def test_hostile_text_is_escaped_everywhere(hostile_site: tuple[Path, Path]) -> None:
    _, site = hostile_site
    pages = [site / "index.html"] + sorted((site / "methods").glob("*.html"))
    assert len(pages) == 7
    for page in pages:
        text = page.read_text()
        assert not re.search(r"<script>alert|<img src=x|href=\"javascript:", text, re.I)
        assert text.count("<script") == 1  # only our own table.js
    assert all(p.parent.resolve() == (site / "methods").resolve() for p in pages[1:])
    rows = list(csv.DictReader(io.StringIO((site / "leaderboard.csv").read_text())))
    hostile = [r for r in rows if r["method"].startswith("<script>")][0]
    assert hostile["base_model"].startswith("'=")  # spreadsheet formula defused
    md = (site / "leaderboard.md").read_text()
    assert "<script>" not in md and "\\<script\\>" in md


def test_safe_url_allows_only_http() -> None:
    assert safe_url("https://arxiv.org/abs/2506.05598") == "https://arxiv.org/abs/2506.05598"
    for bad in ("javascript:alert(1)", "data:text/html,x", "//evil.example", "http://", "https://a b",
                "file:///etc/passwd", " JaVaScRiPt:alert(1)", None, 3):
        assert safe_url(bad) is None


def test_table_ranks_ties_and_not_applicable(standard_site: tuple[Path, Path]) -> None:
    results_dir, site = standard_site
    doc = json.loads((site / "leaderboard.json").read_text())
    rows = [r for r in doc["rows"] if r["dataset"] == "chatbot_arena"]
    raw = {json.loads(p.read_text())["method"]["name"]: json.loads(p.read_text())
           for p in (results_dir / "chatbot_arena").rglob("results.json")}
    ok = [r for r in rows if r["status"] == "ok"]
    assert [r["method"] for r in ok] == sorted((m for m in raw if raw[m]["status"] == "ok"),
                                               key=lambda m: -raw[m]["scores"]["accuracy"])
    lead_lo = raw[ok[0]["method"]]["scores"]["accuracy_ci95"][0]
    for r in ok[1:]:
        assert r["tied_with_leader"] == (raw[r["method"]]["scores"]["accuracy_ci95"][1] >= lead_lo)
        assert r["accuracy"] == raw[r["method"]]["scores"]["accuracy"]
    na = [r for r in rows if r["status"] != "ok"]
    assert [r["method"] for r in na] == ["demographics"] and na[0]["rank"] is None and na[0]["accuracy"] is None
    html = (site / "index.html").read_text()
    assert "not applicable</span>: needs user profiles" in html
    csv_rows = list(csv.DictReader(io.StringIO((site / "leaderboard.csv").read_text())))
    assert len(csv_rows) == len(doc["rows"]) == 10
    md = (site / "leaderboard.md").read_text()
    assert md.count("| synthesizeme |") == 2 and "(synthetic data)" in md


def test_reported_rows_join_the_table(results_dir: Path, tmp_path: Path, monkeypatch) -> None:
    from personalrewardbench.leaderboard import reported

    csv_path = tmp_path / "reported-results.csv"
    csv_path.write_text(
        "source,dataset,base_model,method,accuracy,ci95_or_se,uncertainty_kind,note,citation_url\n"
        '"Ryan et al. 2025, SynthesizeMe",chatbot_arena,Llama-3.3-70B-Instruct,memory,57.57,4.05,ci95,,'
        "https://arxiv.org/abs/2506.05598\n"
        '"Some paper <i>x</i>",chatbot_arena,Llama-3.1-8B,gpo,55.0,,,,javascript:alert(1)\n')
    monkeypatch.setattr(reported, "DEFAULT_PATH", csv_path)
    build_site([results_dir], tmp_path / "site", include_reported=True, plots=False)
    doc = json.loads((tmp_path / "site" / "leaderboard.json").read_text())
    rep = {r["method"]: r for r in doc["rows"] if r["tier"] == "reported"}
    assert set(rep) == {"memory", "gpo"} and rep["memory"]["accuracy"] == pytest.approx(0.5757)
    assert rep["memory"]["accuracy_ci95_low"] == pytest.approx(0.5352) and rep["memory"]["results"] is None
    assert rep["gpo"]["accuracy_ci95_low"] is None and rep["gpo"]["tied_with_leader"] is None
    html = (tmp_path / "site" / "index.html").read_text()
    assert "not reported" in html and "Ryan et al. 2025" in html
    assert 'href="https://arxiv.org/abs/2506.05598"' in html and "javascript:" not in html
    assert "&lt;i&gt;x&lt;/i&gt;" in html


def test_refuses_to_clobber_a_foreign_folder(results_dir: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(SiteError, match="not empty"):
        build_site([results_dir], foreign, include_reported=False)
    assert (foreign / "notes.txt").read_text() == "keep me"
    assert main(["leaderboard", "build", "--results", str(tmp_path / "nope"), "--out", str(foreign)]) == 2
