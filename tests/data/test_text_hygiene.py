"""Broken text in every supported format: repaired to U+FFFD and counted with file, line and field;
never a traceback. Expected texts and counts are worked out by hand from the bytes written."""

from __future__ import annotations

import json

import pytest

from personalrewardbench.cli import main
from personalrewardbench.data import DataError, build_benchmark, load_benchmark
from personalrewardbench.data.records import iter_records
from personalrewardbench.data.text import Findings, normalize_text
from tests.data.helpers import ARENA_DIR, PUBLISHED_DIR, read_jsonl

ARENA_ROWS = read_jsonl(ARENA_DIR / "train.jsonl")
PUB_ROWS = [r for s in ("train", "validation", "test")
            for r in read_jsonl(PUBLISHED_DIR / "chatbot_arena_personalized_0125" / f"{s}.jsonl")]
LONE = "\ud83d"  # the first half of an emoji: valid JSON (as an escape), invalid Unicode


def _lines(rows) -> list[bytes]:
    # json.dumps with the default ensure_ascii=True writes a lone surrogate as the escape \ud83d
    return [json.dumps(r).encode() + b"\n" for r in rows]


def test_lone_surrogate_in_published_schema_is_a_warning_with_file_line_field(tmp_path, capsys):
    rows = [dict(r) for r in PUB_ROWS]
    rows[3] = dict(rows[3], chosen={"role": "model", "content": f"Half an emoji {LONE} here"})
    f = tmp_path / "mine.jsonl"
    f.write_bytes(b"".join(_lines(rows)))
    bench = load_benchmark(f)
    w, where = bench.manifest.warnings, bench.manifest.warning_locations
    assert w["text_unpaired_surrogate"] == 1
    assert where["text_unpaired_surrogate"] == ["mine.jsonl line 4: field chosen.content"]
    conv = rows[3]["conversation_id"]
    pair = next(p for p in bench.pairs if p.meta["conversation_id"] == conv)
    assert pair.chosen == "Half an emoji \ufffd here"
    # the CLI: validate names it; --strict refuses it in one line; evaluate runs
    assert main(["data", "validate", "--dataset", str(f)]) == 0
    out = capsys.readouterr().out
    assert "text_unpaired_surrogate=1" in out and "mine.jsonl line 4: field chosen.content" in out
    assert main(["data", "validate", "--dataset", str(f), "--strict"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--strict" in err and "mine.jsonl line 4: field chosen.content" in err
    assert main(["evaluate", "--method", "length", "--dataset", str(f), "--out", str(tmp_path / "res"),
                 "--quiet"]) == 0
    res = json.loads(next((tmp_path / "res").rglob("results.json")).read_text())
    assert res["dataset"]["manifest"]["warnings"]["text_unpaired_surrogate"] == 1


def test_lone_surrogate_in_raw_arena_is_a_warning(tmp_path, capsys):
    rows = [dict(r) for r in ARENA_ROWS]
    conv_b = [dict(m) for m in rows[1]["conversation_b"]]
    conv_b[1]["content"] = conv_b[1]["content"] + " " + LONE
    rows[1] = dict(rows[1], conversation_b=conv_b)
    f = tmp_path / "arena.jsonl"
    f.write_bytes(b"".join(_lines(rows)))
    bench = build_benchmark("chatbot_arena_raw", input=f, use_cache=False)
    assert bench.manifest.warnings["text_unpaired_surrogate"] == 1
    assert bench.manifest.warning_locations["text_unpaired_surrogate"] == [
        "arena.jsonl line 2: field conversation_b[1].content"]
    p = next(p for p in bench.pairs if p.pair_id == f"arena:{rows[1]['question_id']}")
    assert "\ufffd" in p.chosen + p.rejected
    out = tmp_path / "built"
    assert main(["data", "build", "--source", "chatbot_arena_raw", "--input", str(f), "--out", str(out),
                 "--no-cache"]) == 0
    assert "text repaired (U+FFFD): text_unpaired_surrogate=1" in capsys.readouterr().out
    assert load_benchmark(out).manifest.warnings["text_unpaired_surrogate"] == 1  # kept in the built folder


def test_invalid_utf8_bom_nul_in_jsonl(tmp_path):
    rows = [dict(r) for r in PUB_ROWS]
    lines = _lines(rows)
    # line 2: two bytes that are not UTF-8 inside the rejected text; line 5: a NUL escape in the context
    lines[1] = lines[1].replace(rows[1]["rejected"]["content"].encode(),
                                rows[1]["rejected"]["content"].encode() + b" \xff\xfe!")
    rows4 = dict(rows[4], context=[{"role": "user", "content": "nul\u0000here"}])
    lines[4] = json.dumps(rows4).encode() + b"\n"
    f = tmp_path / "mixed.jsonl"
    f.write_bytes(b"\xef\xbb\xbf" + b"".join(lines))  # with a UTF-8 byte-order mark
    bench = load_benchmark(f)
    w, where = bench.manifest.warnings, bench.manifest.warning_locations
    assert w["text_invalid_utf8"] == 1 and where["text_invalid_utf8"] == ["mixed.jsonl line 2: field rejected.content"]
    assert w["text_nul_character"] == 1 and where["text_nul_character"] == [
        "mixed.jsonl line 5: field context[0].content"]
    by_conv = {p.meta["conversation_id"]: p for p in bench.pairs}
    assert by_conv[rows[1]["conversation_id"]].rejected == rows[1]["rejected"]["content"] + " \ufffd\ufffd!"
    assert by_conv[rows[4]["conversation_id"]].context[0].content == "nul\ufffdhere"


def test_truncated_last_line_and_utf16_are_one_message(tmp_path):
    lines = _lines(PUB_ROWS)
    f = tmp_path / "cut.jsonl"
    f.write_bytes(b"".join(lines[:-1]) + lines[-1][:40])
    with pytest.raises(DataError, match=rf"cut\.jsonl line {len(lines)}: the last line is cut short"):
        load_benchmark(f)
    g = tmp_path / "wide.jsonl"
    g.write_bytes(b"".join(lines).decode().encode("utf-16"))
    with pytest.raises(DataError, match=r"UTF-16-encoded; records must be UTF-8"):
        load_benchmark(g)


def test_parquet_with_bytes_that_are_not_utf8(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [dict(r) for r in PUB_ROWS]
    table = pa.Table.from_pylist(rows)
    # rebuild the user_id column's buffers with a bad byte in row 2 (pyarrow will not write one otherwise)
    raw = [r["user_id"].encode() for r in rows]
    raw[2] = raw[2] + b"\xff"
    bad = pa.Array.from_buffers(pa.string(), len(raw), pa.array(raw, type=pa.binary()).buffers())
    table = table.set_column(table.schema.get_field_index("user_id"), "user_id", bad)
    f = tmp_path / "bad.parquet"
    pq.write_table(table, f)
    findings = Findings()
    recs = list(iter_records(f, dataset="bad", findings=findings))
    assert recs[2][1]["user_id"] == rows[2]["user_id"] + "\ufffd"
    assert recs[0][1]["chosen"] == rows[0]["chosen"]  # everything else read as before
    assert findings.where() == {"text_invalid_utf8": ["bad.parquet row 2: field user_id"]}
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(DataError, match=r"not a readable parquet file"):
        load_benchmark(corrupt)


def test_normalized_text():
    assert normalize_text("  A  reply\n\nwith\tspaces ") == "A reply with spaces"
    assert normalize_text("ﬁne\u00a0day") == "fine day"  # NFKC: ligature and no-break space
