"""The reported (published) rows: every row of the data file, citation and uncertainty kind kept."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from personalrewardbench.leaderboard.reported import DEFAULT_PATH, ReportedError, load_reported


def test_loads_every_row_with_citation_and_uncertainty_kind():
    rows = load_reported()
    with DEFAULT_PATH.open(newline="") as fh:
        raw = list(csv.DictReader(fh))
    assert len(rows) == len(raw) > 50
    assert {r.tier for r in rows} == {"reported"}
    assert {r.dataset for r in rows} == {"chatbot_arena", "prism"}
    for r, rec in zip(rows, raw, strict=True):
        assert r.citation == rec["source"] and r.citation
        assert r.accuracy == pytest.approx(float(rec["accuracy"]) / 100)
        assert r.uncertainty_kind == (rec["uncertainty_kind"] or None)
    first = rows[0]  # SynthesizeMe, default judge on Chatbot Arena: 56.69 +- 4.05 (95% CI)
    assert (first.method, first.dataset, first.uncertainty_kind) == ("default-judge", "chatbot_arena", "ci95")
    assert first.ci95 == pytest.approx((0.5264, 0.6074))
    se_row = next(r for r in rows if r.uncertainty_kind == "se")
    assert se_row.ci95_half_width == pytest.approx(1.959964 * se_row.uncertainty)
    assert se_row.get("citation_url") is None and first.get("citation_url").startswith("https://arxiv.org/")
    assert any(r.uncertainty is None and r.ci95 is None for r in rows)


def test_matches_the_collected_reference_table_when_available():
    shared = Path(__file__).resolve().parents[3] / "shared" / "reported-results.csv"
    if not shared.exists():
        pytest.skip(f"{shared} not found: this compares with the workspace's copy of the reported numbers "
                    "(shared/ beside the repository); nothing to fix outside that workspace")
    with shared.open(newline="") as a, DEFAULT_PATH.open(newline="") as b:
        theirs = [r[:8] for r in csv.reader(a)]
        ours = [r[:8] for r in csv.reader(b)]
    assert ours == theirs


@pytest.mark.parametrize("line,message", [
    ("x,prism,m,default-judge,abc,,,,", "accuracy 'abc' is not a number"),
    ("x,prism,m,default-judge,55.0,1.0,stderr,,", "uncertainty_kind 'stderr' must be"),
    ("x,prism,m,default-judge,55.0,1.0,,,", "must both be set or both be empty"),
    (",prism,m,default-judge,55.0,,,,", "source is empty"),
    ("x,prism,m,default-judge,155.0,,,,", "percentage in [0, 100]"),
])
def test_bad_rows_name_the_line_and_field(tmp_path, line, message):
    path = tmp_path / "r.csv"
    path.write_text(DEFAULT_PATH.read_text().splitlines()[0] + "\n" + line + "\n")
    with pytest.raises(ReportedError, match=r"line 2") as info:
        load_reported(path)
    assert message in str(info.value)
