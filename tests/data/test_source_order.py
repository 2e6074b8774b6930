"""A user's pairs keep their source order (published row order, Arena tstamp, PRISM conversation and
turn order, summarize batch order); the content hash does not depend on it."""

from __future__ import annotations

import json
from pathlib import Path

from personalrewardbench.data import load_benchmark, save_benchmark
from personalrewardbench.data.build import build_benchmark
from personalrewardbench.data.order import SOURCE_POSITION, assign_source_positions, source_position
from personalrewardbench.data.published import benchmark_from_rows
from personalrewardbench.data.schema import Message, PreferencePair

FIXTURES = Path(__file__).parent / "fixtures"


def _row(uid: str, conv: str, split: str, k: int) -> dict:
    """One row in the published hub schema."""
    return {"user_id": uid, "conversation_id": conv, "context": [{"role": "user", "content": f"question {k}"}],
            "chosen": {"role": "model", "content": f"chosen {k}"}, "rejected": {"role": "model",
                                                                             "content": f"rejected {k}"},
            "split": split, "flip": bool(k % 2), "turns": 1, "type": "unguided"}


def test_published_rows_keep_their_order_though_pair_ids_sort_c10_before_c9():
    rows = [_row("u", f"c{k}", "train", k) for k in (9, 10, 11, 2)] + [_row("u", f"c{k}", "val", k) for k in (12, 3)]
    rows += [_row("u", "c99", "test", 99)]
    bench = benchmark_from_rows(rows, name="prism", sources=[{"id": "t"}])
    assert [p.pair_id.split(":")[0] for p in bench.pairs][:3] == ["c10", "c11", "c12"]  # pair-id order
    (h,) = bench.histories()
    assert [p.context[0].content for p in h.train] == ["question 9", "question 10", "question 11", "question 2"]
    assert [p.context[0].content for p in h.val] == ["question 12", "question 3"]
    again = benchmark_from_rows(list(reversed(rows)), name="prism", sources=[{"id": "t"}])
    assert again.content_hash == bench.content_hash  # the hash names the data, not its order


def test_built_folder_round_trip_keeps_the_order(tmp_path):
    rows = [_row("u", f"c{k}", "train", k) for k in (9, 10, 2)] + [_row("u", "c5", "val", 5), _row("u", "c6", "test", 6)]
    bench = benchmark_from_rows(rows, name="prism", sources=[{"id": "t"}])
    save_benchmark(bench, tmp_path / "b")
    (h,) = load_benchmark(tmp_path / "b").histories()
    assert [p.context[0].content for p in h.train] == ["question 9", "question 10", "question 2"]


def test_arena_pairs_are_ordered_by_tstamp(tmp_path):
    rows = [json.loads(line) for line in (FIXTURES / "chatbot_arena_conversations" / "train.jsonl").open()]
    user1 = [r for r in rows if r["judge"] == "arena_user_1"]
    for i, r in enumerate(user1):  # read order is the reverse of time order
        r["tstamp"] = 1_700_000_000.0 - i
    src = tmp_path / "arena.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bench = build_benchmark("chatbot_arena_raw", input=src, use_cache=False)
    mine = [p for p in bench.pairs if p.user_id == "arena_user_1"]
    by_position = sorted(mine, key=source_position)
    stamps = [p.meta["tstamp"] for p in by_position]
    assert stamps == sorted(stamps) and len(set(map(source_position, mine))) == len(mine)
    (h,) = [h for h in bench.histories() if h.user_id == "arena_user_1"]
    assert [p.meta["tstamp"] for p in h.train] == sorted(p.meta["tstamp"] for p in h.train)


def test_prism_pairs_follow_conversation_then_turn_order(tmp_path):
    bench = build_benchmark("prism_raw", input=FIXTURES / "prism-alignment", use_cache=False)
    convs = [json.loads(line)["conversation_id"]
             for line in (FIXTURES / "prism-alignment" / "conversations.jsonl").open()]
    for uid in {p.user_id for p in bench.pairs}:
        mine = sorted((p for p in bench.pairs if p.user_id == uid), key=source_position)
        keys = [(convs.index(p.meta["conversation_id"]), p.meta["turn"]) for p in mine]
        assert keys == sorted(keys)


def test_summarize_batches_sort_by_number_then_read_order():
    def pair(i: int, batch: str) -> PreferencePair:
        return PreferencePair(f"p{i}", "w", "summarize_feedback", (Message("user", "post"),), f"a{i}", f"b{i}",
                              "train", {"batch": batch})

    read = [pair(0, "batch10"), pair(1, "batch3"), pair(2, "batch10"), pair(3, "batch3"), pair(4, "batch22")]
    got = assign_source_positions(read, "summarize_feedback")
    assert [p.meta[SOURCE_POSITION] for p in got] == [2, 0, 3, 1, 4]
    assert [p.pair_id for p in got] == [p.pair_id for p in read]  # the list itself is not reordered
