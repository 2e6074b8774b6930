"""`prb data ...` through personalrewardbench.cli.main."""

from __future__ import annotations

import json

import pytest

from personalrewardbench.cli import main
from tests.data.helpers import PRISM_DIR, hub_copy


def test_build_stats_validate_export(tmp_path, capsys, summarize_dir):
    out = tmp_path / "built"
    cache = str(tmp_path / "cache")
    assert main(["data", "build", "--source", "summarize_feedback", "--input", str(summarize_dir), "--out", str(out),
                 "--cache-dir", cache]) == 0
    text = capsys.readouterr().out
    assert "wrote" in text and "summarize_feedback     test" in text
    assert main(["data", "build", "--source", "summarize_feedback", "--input", str(summarize_dir), "--out", str(out),
                 "--cache-dir", cache]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["data", "stats", "--dataset", str(out), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["counts"]["users"] == 11 and stats["counts"]["pairs"] == 674
    assert main(["data", "validate", "--dataset", str(out)]) == 0
    assert "valid: 11 users, 674 pairs" in capsys.readouterr().out
    assert main(["data", "export", "--dataset", str(out), "--out", str(tmp_path / "rows.parquet"),
                 "--format", "parquet"]) == 0
    capsys.readouterr()
    assert main(["data", "stats", "--dataset", str(tmp_path / "rows.parquet")]) == 0
    assert "rows" in capsys.readouterr().out


def test_build_prism_raw_and_published_copy(tmp_path, capsys):
    assert main(["data", "build", "--source", "prism_raw", "--input", str(PRISM_DIR), "--out", str(tmp_path / "p"),
                 "--min-pairs-per-user", "3", "--split-fractions", "0.4,0.2,0.4", "--no-cache",
                 "--prism-pairs", "all-lower"]) == 0
    m = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert m["filters"]["fractions"] == [0.4, 0.2, 0.4] and m["counts"]["users"] == 2
    assert m["filters"]["pairs"] == "all-lower"
    assert m["warnings"]["users_with_under_3_groups"] == 1  # user303: 3 pairs, one conversation
    # default construction: two disjoint pairs per opening turn; user303's one conversation gives 2 < 3 pairs
    assert main(["data", "build", "--source", "prism_raw", "--input", str(PRISM_DIR), "--out", str(tmp_path / "d"),
                 "--min-pairs-per-user", "3", "--no-cache"]) == 0
    m = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert m["filters"]["pairs"] == "opening-disjoint" and m["counts"]["pairs"] == 12
    assert m["warnings"]["users_below_min_pairs"] == 1 and m["warnings"]["later_turns_dropped"] == 1
    copy = hub_copy(tmp_path, "prism_personalized_0125")
    assert main(["data", "stats", "--dataset", str(copy), "--survey", str(PRISM_DIR / "survey.jsonl")]) == 0
    assert "prism " in capsys.readouterr().out


def test_errors_are_one_line(tmp_path, capsys):
    assert main(["data", "stats", "--dataset", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"prb: error: no such file or folder: {tmp_path / 'missing'}; check the path") \
        and "\n" not in err
    assert main(["data", "stats", "--dataset", "prims"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("prb: error: unknown dataset 'prims'; did you mean: prism") and "\n" not in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"user_id": "u", "context": [], "chosen": "a", "rejected": "b"}\n')
    assert main(["data", "validate", "--dataset", str(bad)]) == 2
    assert "bad.jsonl" in capsys.readouterr().err


def test_help_explains_options(capsys):
    with pytest.raises(SystemExit):
        main(["data", "build", "--help"])
    text = capsys.readouterr().out
    for opt in ("--source", "--input", "--out", "--seed", "--min-pairs-per-user", "--split-fractions", "--no-cache"):
        assert opt in text


@pytest.mark.parametrize("spec", ["../shared/data/summarize-from-feedback", "./summarize_feedback", ".prism",
                                  "~/no-such-prism", "prism.jsonl", "synthetic.parquet", "data/synthetic"])
def test_a_missing_path_is_named_as_a_path_not_matched_to_a_dataset_name(tmp_path, monkeypatch, capsys, spec):
    """A --dataset value that looks like a path (a separator, a leading '.' or '~', a data-file suffix)
    and does not exist is reported as a missing path, even when it resembles a dataset name."""
    monkeypatch.chdir(tmp_path)
    assert main(["data", "stats", "--dataset", spec]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"prb: error: no such file or folder: {spec}; check the path"), err
    assert "did you mean" not in err and "\n" not in err
