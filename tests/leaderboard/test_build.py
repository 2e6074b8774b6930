"""`prb leaderboard build` without a browser: determinism, comparability, ties, reported rows, escaping, exports."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path

import pytest
from scipy.stats import binomtest

from personalrewardbench.cli import main
from personalrewardbench.leaderboard.build import SiteError, build_site
from personalrewardbench.leaderboard.collect import SchemaProblem, check_results
from personalrewardbench.leaderboard.render import safe_url, short_model
from personalrewardbench.methods import load_method
from tests.leaderboard.conftest import MINI, evaluate_into, mini_benchmark


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _rows(site: Path) -> list[dict]:
    return json.loads((site / "leaderboard.json").read_text())["rows"]


def _results(root: Path) -> dict[str, dict]:
    out = {}
    for p in sorted(root.rglob("results.json")):
        out[str(p.parent)] = json.loads(p.read_text())
    return out


def test_rebuild_is_byte_identical(standard_site: tuple[Path, Path], tmp_path: Path) -> None:
    results_dir, site = standard_site
    first = _files(site)
    a = build_site([results_dir], tmp_path / "a", include_reported=True)
    fa = _files(tmp_path / "a")
    assert fa == first
    assert {"index.html", "leaderboard.csv", "leaderboard.json", "leaderboard.md", "methods/length.html"} <= set(fa)
    assert any(n.startswith("plots/mini-arena-") and n.endswith("-accuracy.png") for n in fa)
    assert not any(b"<dc:date>" in v for k, v in fa.items() if k.endswith(".svg"))
    build_site([results_dir], tmp_path / "a", include_reported=True)  # in place: nothing changes
    assert _files(tmp_path / "a") == fa
    c = build_site([results_dir], tmp_path / "a", include_reported=False, plots=False)
    assert not (tmp_path / "a" / "plots").exists() and set(c.files) < set(a.files)


def test_subset_runs_are_shown_apart_and_never_ranked(tmp_path: Path) -> None:
    """The issue's case: full length, full random, then a 1-user length smoke test."""
    from personalrewardbench.data import save_benchmark

    bench = mini_benchmark(n_users=6, n_test=2)
    spec = str(save_benchmark(bench, tmp_path / "bench"))
    results = tmp_path / "results"
    evaluate_into(results, load_method("length"), bench, spec=spec)
    evaluate_into(results, load_method("random"), bench, spec=spec)
    one = evaluate_into(results, load_method("length"), bench, spec=spec, n_users=1)
    build_site([results], tmp_path / "site", include_reported=False, plots=False)
    rows = _rows(tmp_path / "site")
    ranked = [r for r in rows if r["section"] == "ranked"]
    subset = [r for r in rows if r["section"] == "subset"]
    assert sorted(r["method"] for r in ranked) == ["length", "random"]
    assert all(r["n_users"] == 6 and r["n_judgments"] == 24 for r in ranked)
    full_length = json.loads(next((results / MINI / "length").glob("s0/results.json")).read_text())
    assert [r["accuracy"] for r in ranked if r["method"] == "length"] == [full_length["scores"]["accuracy"]]
    assert len(subset) == 1 and subset[0]["method"] == "length" and subset[0]["rank"] is None
    assert subset[0]["n_users"] == 1 and subset[0]["n_judgments"] == 4
    assert subset[0]["accuracy"] == json.loads((one / "results.json").read_text())["scores"]["accuracy"]
    html = (tmp_path / "site" / "index.html").read_text()
    # the ranked table's header states only what its rows share; the subset sits in its own marked section
    assert "Every row evaluated all 6 users of this benchmark version, 12 test pairs" in html
    assert html.index('id="subsets"') > html.index(f'id="table-{ranked[0]["table"]}"')
    assert "1 of 6 users" in html and "Not ranked" in html
    assert "judgments per method" not in html and "1 users" not in html


def test_ties_come_from_the_paired_sign_test(standard_site: tuple[Path, Path]) -> None:
    results_dir, site = standard_site
    rows = [r for r in _rows(site) if r["section"] == "ranked" and r["dataset"] == "synthetic-sample"]
    ok = [r for r in rows if r["status"] == "ok"]
    assert [r["accuracy"] for r in ok] == sorted((r["accuracy"] for r in ok), reverse=True)
    folders = {(d["method"]["name"], d["dataset"]["name"]): Path(k) for k, d in _results(results_dir).items()
               if d["dataset"]["shard"] is None and len(d["dataset"]["selected_users"]) == ok[0]["n_users"]}

    def correct_by_pair(method: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for line in (folders[(method, "synthetic-sample")] / "predictions.jsonl").read_text().splitlines():
            r = json.loads(line)
            ok_ = r["p"] is not None and (r["p"] > 0.5 if r["order"] == "chosen_first" else r["p"] < 0.5)
            out[r["pair_id"]] = out.get(r["pair_id"], 0) + int(ok_)
        return out

    lead = correct_by_pair(ok[0]["method"])
    for r in ok[1:]:
        other = correct_by_pair(r["method"])
        wins_a = sum(lead[p] > other[p] for p in lead)
        wins_b = sum(other[p] > lead[p] for p in lead)
        p = binomtest(wins_a, wins_a + wins_b, 0.5).pvalue if wins_a + wins_b else 1.0
        assert r["tie_p_value"] == pytest.approx(p, rel=1e-9), r["method"]
        assert r["tied_with_leader"] == (p >= 0.05)
    na = [r for r in rows if r["status"] != "ok"]
    assert [r["method"] for r in na] == ["demographics-test"] and na[0]["rank"] is None


def test_configs_are_rows_and_identical_runs_pick_by_seed_not_date(results_dir: Path, tmp_path: Path) -> None:
    from personalrewardbench.seal import seal_run

    spec = next(d for d in _results(results_dir).values() if d["dataset"]["name"] == MINI)["dataset"]["location"]["path"]
    # a second identical length run (seed 1), and a copy of the seed-1 run claiming to finish in 2999
    evaluate_into(results_dir, load_method("length"), mini_benchmark(), spec=spec, seed=1)
    later = results_dir / MINI / "length" / "s1"
    future = results_dir / MINI / "length" / "zz-future"
    shutil.copytree(later, future)
    data = json.loads((future / "results.json").read_text())
    data["provenance"]["finished_at"] = "2999-01-01T00:00:00Z"
    (future / "results.json").write_text(json.dumps(data, indent=2))
    seal_run(future)  # sealed by the harness's key: a legitimate run with a wrong clock
    build_site([results_dir], tmp_path / "site", include_reported=False, plots=False)
    rows = [r for r in _rows(tmp_path / "site") if r["dataset"] == MINI and r["section"] == "ranked"]
    lengths = [r for r in rows if r["method"] == "length"]
    assert len(lengths) == 1 and lengths[0]["run_id"] == "s0"  # lowest seed; the future date changes nothing
    personal = [r for r in rows if r["method"] == "personal-length"]
    assert len(personal) == 2 and len({r["config_id"] for r in personal}) == 2  # two configs, two rows
    page = (tmp_path / "site" / "methods" / "length.html").read_text()
    assert "Identical runs not shown" in page and "zz-future" in page


def test_reported_rows_are_converted_and_kept_apart(standard_results: tuple[Path, Path], tmp_path: Path,
                                                    monkeypatch) -> None:
    from personalrewardbench.leaderboard import reported

    csv_path = tmp_path / "reported-results.csv"
    csv_path.write_text(
        "source,dataset,base_model,method,accuracy,ci95_or_se,uncertainty_kind,note,citation_url\n"
        '"Paper A",mini-arena,Llama-3.3-70B-Instruct,memory,60.0,4.0,ci95,,https://arxiv.org/abs/2506.05598\n'
        '"Paper B",mini-arena,Llama-3.1-8B,length,58.0,1.5,se,,\n'
        '"Paper A",mini-arena,Llama-3.3-70B-Instruct,default-judge,57.0,3.0,ci95,,\n'
        '"Paper <i>x</i>",mini-arena,Llama-3.1-8B,gpo,55.0,,,,javascript:alert(1)\n')
    monkeypatch.setattr(reported, "DEFAULT_PATH", csv_path)
    build_site([standard_results[0]], tmp_path / "site", include_reported=True, plots=False)
    rows = _rows(tmp_path / "site")
    rep = {r["method"]: r for r in rows if r["tier"] == "reported"}
    assert all(r["section"] == "published" for r in rep.values())
    assert not any(r["tier"] == "reported" for r in rows if r["section"] == "ranked")
    assert rep["memory"]["rank"] == 1 and rep["memory"]["accuracy_ci95_low"] == pytest.approx(0.56)
    # a standard error becomes 1.96 x SE before anything is compared, and is marked as another kind
    assert rep["length"]["accuracy_ci95_low"] == pytest.approx(0.58 - 1.959964 * 0.015)
    assert rep["length"]["tied_with_leader"] is None and "not directly comparable" in rep["length"]["comparability_note"]
    assert rep["default-judge"]["tied_with_leader"] is True  # same kind: [54, 60] overlaps [56, 64]
    assert rep["gpo"]["tied_with_leader"] is None and rep["gpo"]["accuracy_ci95_low"] is None
    html = (tmp_path / "site" / "index.html").read_text()
    assert html.index('id="published"') > html.index(f'id="table-{rows[0]["table"]}"')  # our runs first
    assert 'href="https://arxiv.org/abs/2506.05598"' in html and "javascript:" not in html
    assert "&lt;i&gt;x&lt;/i&gt;" in html


def test_hostile_text_is_escaped_everywhere(hostile_site: tuple[Path, Path]) -> None:
    _, site = hostile_site
    pages = [site / "index.html"] + sorted((site / "methods").glob("*.html"))
    for page in pages:
        text = page.read_text()
        assert not re.search(r"<script>alert|<img src=x|href=\"javascript:|</pre><script", text, re.I)
        assert text.count("<script") == 1  # only our own table.js
    assert all(p.parent.resolve() == (site / "methods").resolve() for p in pages[1:])
    rows = list(csv.DictReader(io.StringIO((site / "leaderboard.csv").read_text())))
    hostile = [r for r in rows if r["method"].startswith("<script>")][0]
    assert hostile["base_model"].startswith("'=")  # spreadsheet formula defused
    md = (site / "leaderboard.md").read_text()
    assert "<script>" not in md and "\\<script\\>" in md


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.pop("schema_version"), "schema_version"),
    (lambda d: d["scores"].update(accuracy_ci95=[0.7, 0.6]), "accuracy_ci95"),
    (lambda d: d["scores"].update(accuracy=float("nan")), "scores.accuracy"),
    (lambda d: d["scores"].update(accuracy=10 ** 400), "scores.accuracy"),
    (lambda d: d["scores"].update(accuracy_ci95=[0.0, 0.01]), "does not contain its own estimate"),
    (lambda d: d["scores"].update(n_judgments="many"), "scores.n_judgments"),
    (lambda d: d["dataset"].update(selected_users="all"), "dataset.selected_users"),
    (lambda d: d["per_user"][next(iter(d["per_user"]))].update(n_train=-1), "n_train"),
    (lambda d: d.update(status="done"), "status"),
])
def test_check_results_names_the_field(standard_results: tuple[Path, Path], mutate, field: str) -> None:
    data = json.loads(next(standard_results[0].glob(f"{MINI}/random/s0/results.json")).read_text())
    check_results(data)
    mutate(data)
    with pytest.raises(SchemaProblem, match=re.escape(field)):
        check_results(data)


def test_short_model_names() -> None:
    assert short_model("transformers:HuggingFaceTB/SmolLM2-135M-Instruct@9d1c2b6e") == "SmolLM2-135M-Instruct"
    assert short_model("openai:meta-llama/Llama-3.1-8B-Instruct") == "Llama-3.1-8B-Instruct"
    assert short_model("/models/qwen2.5-0.5b-instruct-q4_k_m.gguf") == "qwen2.5-0.5b-instruct-q…"  # 23 characters + ellipsis
    assert len(short_model("x" * 200)) == 24


def test_safe_url_allows_only_http() -> None:
    assert safe_url("https://arxiv.org/abs/2506.05598") == "https://arxiv.org/abs/2506.05598"
    for bad in ("javascript:alert(1)", "data:text/html,x", "//evil.example", "http://", "https://a b",
                "file:///etc/passwd", " JaVaScRiPt:alert(1)", None, 3):
        assert safe_url(bad) is None


def test_refuses_to_clobber_a_foreign_folder(standard_results: tuple[Path, Path], tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(SiteError, match="not empty"):
        build_site([standard_results[0]], foreign, include_reported=False)
    assert (foreign / "notes.txt").read_text() == "keep me"
    assert main(["leaderboard", "build", "--results", str(tmp_path / "nope"), "--out", str(foreign)]) == 2


def test_runs_on_the_same_subset_are_ranked_among_themselves(tmp_path: Path) -> None:
    from personalrewardbench.data import save_benchmark

    bench = mini_benchmark(n_users=8, n_test=3)
    spec = str(save_benchmark(bench, tmp_path / "bench"))
    results = tmp_path / "results"
    for name in ("length", "random"):
        evaluate_into(results, load_method(name), bench, spec=spec, n_users=4)
    evaluate_into(results, load_method("length"), bench, spec=spec)  # a full run: its own table
    build_site([results], tmp_path / "site", include_reported=False, plots=False)
    rows = _rows(tmp_path / "site")
    subset = sorted((r for r in rows if r["section"] == "subset"), key=lambda r: r["rank"])
    assert [r["n_users"] for r in subset] == [4, 4] and [r["rank"] for r in subset] in ([1, 2], [1, 1])
    assert subset[0]["accuracy"] >= subset[1]["accuracy"] and subset[1]["tie_p_value"] is not None
    ranked = [r for r in rows if r["section"] == "ranked"]
    assert [(r["method"], r["rank"], r["n_users"]) for r in ranked] == [("length", 1, 8)]
    assert "Ranked among these runs only" in (tmp_path / "site" / "index.html").read_text()
