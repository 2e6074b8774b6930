"""Leftovers of the data red team: a very long field, NaN in meta/profile fields, an empty system
message hiding a repeat, and files named like hub split files that are not the hub repo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from personalrewardbench.cli import main
from personalrewardbench.data import DataError, load_benchmark
from personalrewardbench.data.audit import audit_benchmark
from personalrewardbench.data.store import save_benchmark
from personalrewardbench.data.text import LONG_TEXT, normalize_text
from personalrewardbench.data.validate import VERY_LONG_CHARS
from tests.data.helpers import PRISM_DIR, PUBLISHED_DIR, hub_copy, read_jsonl, write_jsonl

REPO = "prism_personalized_0125"
SPLITS = ("train", "validation", "test")


def _rows() -> list[dict[str, Any]]:
    """12 rows: 4 train, 3 validation, 5 test; row 7 (line 8) is user101's first test row."""
    return [r for s in SPLITS for r in read_jsonl(PUBLISHED_DIR / REPO / f"{s}.jsonl")]


def _no_nan(text: str) -> Any:
    def refuse(token: str) -> Any:
        raise AssertionError(f"non-standard JSON token {token}")
    return json.loads(text, parse_constant=refuse)


# --- a very long field -----------------------------------------------------------------------------


def test_very_long_response_is_a_warning_naming_the_field(tmp_path):
    rows = _rows()
    rows[7]["chosen"]["content"] = "word " * (VERY_LONG_CHARS // 5) + "end."  # 1,000,004 characters
    rows[2]["context"][0]["content"] = "x" * VERY_LONG_CHARS  # exactly the limit: not counted
    bench = load_benchmark(write_jsonl(tmp_path / "pairs.jsonl", rows))
    assert bench.manifest.warnings["very_long_text"] == 1
    (where,) = bench.manifest.warning_locations["very_long_text"]
    assert where.startswith("pairs.jsonl line 8 ") and "field 'chosen' holds 1,000,004 characters" in where


@pytest.mark.parametrize("gap", [" ", "  \n\t ", "\u2003"])
def test_long_text_normalizes_piecewise_like_split_join(gap):
    """Over LONG_TEXT characters normalize_text works piece by piece; words and whitespace runs that
    straddle a piece boundary (every 65,536 characters) come out as for a short text: words joined by
    one space (str.split / join, the definition), NFKC applied to non-ASCII text."""
    words = [f"w{i}" * (1 + i % 7) for i in range(LONG_TEXT // 9)]
    text = "  " + gap.join(words) + gap
    assert len(text) > LONG_TEXT
    want = " ".join(words)
    assert normalize_text(text) == want
    assert normalize_text("\ufb01" + text) == "fi " + want  # a ligature: the non-ASCII path (NFKC)


# --- NaN in meta and profiles --------------------------------------------------------------------------


def test_nan_in_meta_is_written_as_null_and_counted(tmp_path, capsys):
    """Rows as pandas writes them: NaN for a missing score (line 8) and Infinity in a nested field
    (line 9). Both become null, each counted with its row and field; the built pairs.jsonl and the
    exported jsonl are standard JSON."""
    lines = [json.dumps(r) for r in _rows()]
    lines[7] = lines[7][:-1] + ', "judge_score": NaN}'
    lines[8] = lines[8][:-1] + ', "scores": {"judge": [1.0, Infinity]}}'
    src = tmp_path / "pairs.jsonl"
    src.write_text("\n".join(lines) + "\n")
    bench = load_benchmark(src)
    assert bench.manifest.warnings["non_finite_number"] == 2
    locs = bench.manifest.warning_locations["non_finite_number"]
    assert any(w.startswith("pairs.jsonl line 8") and "meta.judge_score is nan" in w for w in locs)
    assert any(w.startswith("pairs.jsonl line 9") and "meta.scores.judge[1] is inf" in w for w in locs)
    out = save_benchmark(bench, tmp_path / "built")
    pairs = [_no_nan(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    assert sorted(p["meta"]["judge_score"] for p in pairs if "judge_score" in p["meta"]) == [None]
    assert [p["meta"]["scores"] for p in pairs if "scores" in p["meta"]] == [{"judge": [1.0, None]}]
    assert load_benchmark(out).content_hash == bench.content_hash
    assert main(["data", "export", "--dataset", str(src), "--format", "jsonl", "--out", str(tmp_path / "e.jsonl")]) == 0
    assert len([_no_nan(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]) == 12
    # --strict refuses it (a repair), naming the field
    assert main(["data", "validate", "--dataset", str(src), "--strict"]) == 2
    assert "non_finite_number=2" in capsys.readouterr().err


def test_nan_in_a_survey_profile_is_null(tmp_path):
    survey = read_jsonl(PRISM_DIR / "survey.jsonl")
    lines = [json.dumps(r) for r in survey]
    lines[0] = lines[0][:-1] + ', "ethnicity_score": NaN}'
    (tmp_path / "survey.jsonl").write_text("\n".join(lines) + "\n")
    bench = load_benchmark(hub_copy(tmp_path, REPO), survey=tmp_path / "survey.jsonl")
    uid = survey[0]["user_id"]
    assert bench.profiles[uid]["ethnicity_score"] is None
    assert bench.manifest.warnings["non_finite_number"] == 1
    assert bench.manifest.warning_locations["non_finite_number"] == [
        f"profile of user {uid!r}: field ethnicity_score is nan, written as null"]
    out = save_benchmark(bench, tmp_path / "built")
    _no_nan((out / "profiles.json").read_text())


# --- an empty system message --------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [{"role": "system", "content": ""}, {"role": "system", "content": " \n\u200b"}])
def test_repeat_with_an_empty_system_message_added_is_a_repeat(tmp_path, extra):
    """user101's train pair (row 0) again in test with an empty system message before its context:
    the same conversation. Local data: the empty message is itself an error (named by line and field);
    the official layout: it is counted, and the test pair repeats a history pair (decided, correctly)."""
    rows = _rows()
    rep = json.loads(json.dumps(rows[0]))
    rep.update(split="test", conversation_id="again")
    rep["context"].insert(0, extra)
    with pytest.raises(DataError, match=rf"pairs.jsonl line {len(rows) + 1} .*field 'context\[0\].content' is empty"):
        load_benchmark(write_jsonl(tmp_path / "pairs.jsonl", [*rows, rep]))

    def edit(split: str, rs: list[dict]) -> None:
        if split == "test":
            rs.append(rep)

    bench = load_benchmark(hub_copy(tmp_path, REPO, edit=edit))
    assert bench.manifest.warnings["test_repeats_history"] == 1
    assert bench.manifest.warnings["empty_context_message"] == 1
    b = audit_benchmark(bench)["users"]["user101"]
    assert b["signals"]["repeats_history_pair"]["pairs"] == 1 and b["signals"]["repeats_history_pair"]["on_chosen"] == 1


# --- what counts as the official benchmark --------------------------------------------------------------


def _identical(rows: list[dict]) -> None:
    rows[1]["rejected"] = dict(rows[1]["chosen"])


def test_a_file_named_like_a_hub_split_is_user_data(tmp_path):
    """`train-00000-of-00001.jsonl` on its own (the published schema, one row with identical
    responses): user data, so the quirk is an error, not an official warning."""
    rows = _rows()
    _identical(rows)
    f = write_jsonl(tmp_path / "train-00000-of-00001.jsonl", rows)
    with pytest.raises(DataError, match="field 'chosen' is identical to 'rejected'"):
        load_benchmark(f)
    bench = load_benchmark(write_jsonl(tmp_path / "ok" / "train-00000-of-00001.jsonl", _rows()))
    assert not bench.manifest.official
    assert bench.manifest.warnings["hub_layout_not_official"] == 1


def _drop(path: Path) -> Path:
    path.unlink()
    return path


@pytest.mark.parametrize("change,why", [
    (lambda d: _drop(d / "data" / "validation-00000-of-00001.parquet"), "no validation split file"),
    (lambda d: (d / "data" / "test-00000-of-00001.parquet").rename(d / "data" / "test-00000-of-00002.parquet"),
     "test shards in data/ are incomplete"),
])
def test_a_folder_that_is_not_the_hub_repo_layout_is_user_data(tmp_path, change, why):
    copy = hub_copy(tmp_path, REPO)
    change(copy)
    bench = load_benchmark(copy)
    assert not bench.manifest.official
    (where,) = bench.manifest.warning_locations["hub_layout_not_official"]
    assert why in where


def test_hub_copy_without_its_readme_is_official(tmp_path):
    """What `hf download` writes, with or without the dataset card: all three splits, every shard."""
    copy = hub_copy(tmp_path, REPO)
    (copy / "README.md").unlink()
    bench = load_benchmark(copy)
    assert bench.manifest.official and "hub_layout_not_official" not in bench.manifest.warnings
