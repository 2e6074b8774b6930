"""A context that is empty in practice (only whitespace or invisible format characters) is treated
like an empty response: an error naming file, row and field for local data in every format, counted
for the official published layout, and a dropped pair (counted) when a raw source is built."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from personalrewardbench.cli import main
from personalrewardbench.data import DataError, build_benchmark, load_benchmark
from tests.data.helpers import ARENA_DIR, PUBLISHED_DIR, hub_copy, read_jsonl, write_jsonl

REPO = "prism_personalized_0125"
SPLITS = ("train", "validation", "test")
ZW = "\u200b\u00ad"  # zero-width space + soft hyphen: both Unicode category Cf, nothing visible


def _rows() -> list[dict[str, Any]]:
    """The 12 published-schema rows of the fixture; row index 2 is line 3 of a jsonl file."""
    return [r for s in SPLITS for r in read_jsonl(PUBLISHED_DIR / REPO / f"{s}.jsonl")]


# (id, context of row index 2, field the error names, words of the problem)
EMPTY_CONTEXTS = [
    ("zero-width-user", [{"role": "user", "content": ZW}], "context", "its one message is empty"),
    ("empty-system-and-invisible-user", [{"role": "system", "content": ""}, {"role": "user", "content": ZW}],
     "context", "each of its 2 messages is empty"),
    ("whitespace-user", [{"role": "user", "content": " \n\t\u3000 "}], "context", "its one message is empty"),
    ("empty-system-before-a-real-question", [{"role": "system", "content": ""},
                                             {"role": "user", "content": "How do I fold a shirt?"}],
     "context[0].content", "is empty"),
    # invisible code points that are not format characters: Hangul fillers, Braille blank, variation selector
    ("hangul-filler-user", [{"role": "user", "content": "\u3164\u115f\uffa0"}], "context", "its one message is empty"),
    ("braille-blank-and-selector-user", [{"role": "user", "content": "\u2800 \ufe0f\u034f"}], "context",
     "its one message is empty"),
    ("invisible-turn-in-the-middle", [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": ZW},
                                      {"role": "user", "content": "Well?"}],
     "context[1].content", "is empty (only whitespace or invisible characters)"),
]


def _with_context(context: list[dict[str, str]]) -> list[dict[str, Any]]:
    rows = _rows()
    rows[2]["context"] = context
    return rows


@pytest.mark.parametrize("case,context,field,problem", EMPTY_CONTEXTS, ids=[c[0] for c in EMPTY_CONTEXTS])
def test_local_jsonl_names_line_and_field(tmp_path, case, context, field, problem):
    path = write_jsonl(tmp_path / "pairs.jsonl", _with_context(context))
    with pytest.raises(DataError) as exc:
        load_benchmark(path)
    msg = str(exc.value)
    assert "pairs.jsonl line 3 " in msg and f"field {field!r} " in msg and problem in msg, msg


@pytest.mark.parametrize("case,context,field,problem", EMPTY_CONTEXTS[:3], ids=[c[0] for c in EMPTY_CONTEXTS[:3]])
def test_local_parquet_names_row_and_field(tmp_path, case, context, field, problem):
    path = tmp_path / "pairs.parquet"
    pq.write_table(pa.Table.from_pylist(_with_context(context)), path)
    with pytest.raises(DataError) as exc:
        load_benchmark(path)
    msg = str(exc.value)
    assert "pairs.parquet" in msg and f"field {field!r} " in msg and problem in msg, msg


def test_cli_validate_refuses_it_in_one_line(tmp_path, capsys):
    path = write_jsonl(tmp_path / "pairs.jsonl", _with_context([{"role": "user", "content": ZW}]))
    assert main(["data", "validate", "--dataset", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("prb: error: pairs: pairs.jsonl line 3 ") and "field 'context' has no message with text" \
        in err and "\n" not in err


def test_official_layout_counts_them_as_content_quirks(tmp_path):
    """The hub layout of the published benchmark is scored as released: one pair whose only message
    is invisible (empty_context) and one with an empty system prompt added (empty_context_message)."""
    def edit(split: str, rs: list[dict]) -> None:
        if split == "train":
            rs[0]["context"] = [{"role": "user", "content": ZW}]
            rs[1]["context"].insert(0, {"role": "system", "content": "  "})

    bench = load_benchmark(hub_copy(tmp_path, REPO, edit=edit))
    assert bench.manifest.official
    assert bench.manifest.warnings["empty_context"] == 1
    assert bench.manifest.warnings["empty_context_message"] == 1
    (where,) = bench.manifest.warning_locations["empty_context_message"]
    assert "field 'context[0].content' is empty" in where


def test_validate_strict_refuses_the_official_quirk(tmp_path, capsys):
    def edit(split: str, rs: list[dict]) -> None:
        if split == "test":
            rs[0]["context"] = [{"role": "user", "content": "\t"}]

    assert main(["data", "validate", "--strict", "--dataset", str(hub_copy(tmp_path, REPO, edit=edit))]) != 0
    assert "empty_context" in capsys.readouterr().err


def test_raw_build_drops_a_battle_with_an_invisible_turn(tmp_path):
    """Chatbot Arena raw: the multi-turn battle a1q2 with its first user turn made invisible (in both
    conversations, as upstream repeats the user turns) is dropped and counted, not a build error."""
    rows = read_jsonl(ARENA_DIR / "train.jsonl")
    rec = next(r for r in rows if r["question_id"] == "a1q2")
    for conv in ("conversation_a", "conversation_b"):
        rec[conv][0]["content"] = ZW
    bench = build_benchmark("chatbot_arena_raw", input=write_jsonl(tmp_path / "arena.jsonl", rows), use_cache=False)
    assert "arena:a1q2" not in {p.pair_id for p in bench.pairs}
    assert bench.manifest.warnings["empty_context_message_dropped"] == 1


@pytest.mark.parametrize("blank", ["\u3164", "\u2800\u2800", "\u115f\u1160", "\ufe0f\U000e0101", "\u034f \u3164"])
def test_a_response_of_invisible_code_points_is_empty(tmp_path, blank):
    rows = _rows()
    rows[2]["chosen"] = [{"role": "assistant", "content": blank}] if isinstance(rows[2]["chosen"], list) \
        else {"role": "assistant", "content": blank} if isinstance(rows[2]["chosen"], dict) else blank
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    with pytest.raises(DataError) as exc:
        load_benchmark(path)
    msg = str(exc.value)
    assert "pairs.jsonl line 3 " in msg and "field 'chosen' is empty (only whitespace or invisible characters)" in msg
