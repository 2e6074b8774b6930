"""Manifest, content hash, built folders and the build cache."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from personalrewardbench.data import DataError, build, build_benchmark, load_benchmark, save_benchmark
from personalrewardbench.data.schema import content_hash
from personalrewardbench.data.splits import SplitSettings
from personalrewardbench.data.store import make_benchmark
from tests.conftest import make_tiny_benchmark
from tests.data.helpers import ARENA_DIR, PRISM_DIR, read_jsonl, write_jsonl


def test_save_and_load_round_trip(tmp_path):
    bench = build_benchmark("prism_raw", input=PRISM_DIR, use_cache=False)
    save_benchmark(bench, tmp_path / "b")
    again = load_benchmark(tmp_path / "b")
    assert again.pairs == bench.pairs and dict(again.profiles) == dict(bench.profiles)
    assert again.manifest == bench.manifest
    lines = (tmp_path / "b" / "pairs.jsonl").read_text().splitlines()
    assert [json.loads(line)["pair_id"] for line in lines] == sorted(p.pair_id for p in bench.pairs)
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert m["seed"] == 0 and m["filters"]["min_pairs_per_user"] == 5 and m["sources"][0]["sha256"]


def test_content_hash_changes_iff_data_changes():
    bench = make_tiny_benchmark()
    pairs, profs = list(bench.pairs), dict(bench.profiles)
    h = content_hash(pairs, profs)
    assert content_hash(list(reversed(pairs)), profs) == h  # order is not data
    assert make_benchmark(pairs, profs, name="other", sources=[{"id": "x"}], filters={"a": 1}, seed=9).content_hash == h
    changed = [
        [replace(pairs[0], split="val"), *pairs[1:]],
        [replace(pairs[0], chosen=pairs[0].chosen + "!"), *pairs[1:]],
        [replace(pairs[0], meta={"i": 99}), *pairs[1:]],
        pairs[1:],
    ]
    for c in changed:
        assert content_hash(c, profs) != h
    assert content_hash(pairs, {**profs, "user0": {"age": "18-24"}}) != h


def test_edited_built_folder_is_rejected(tmp_path):
    save_benchmark(make_tiny_benchmark(), tmp_path / "b")
    f = tmp_path / "b" / "pairs.jsonl"
    f.write_text(f.read_text().replace("Answer 0.", "Answer zero."))
    with pytest.raises(DataError, match="content hash .* does not match manifest.json"):
        load_benchmark(tmp_path / "b")


def test_cache_reused_when_inputs_and_settings_match(tmp_path, monkeypatch):
    rows = read_jsonl(ARENA_DIR / "train.jsonl")
    src = write_jsonl(tmp_path / "in" / "arena.jsonl", rows)
    first = build_benchmark("chatbot_arena_raw", input=src, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.pkl"))) == 1

    def boom(*a, **k):
        raise AssertionError("rebuilt although the cache matched")

    monkeypatch.setattr(build, "_collect", boom)
    again = build_benchmark("chatbot_arena_raw", input=src, cache_dir=tmp_path / "cache")
    assert again.content_hash == first.content_hash and again.manifest == first.manifest
    monkeypatch.undo()
    other_seed = build_benchmark("chatbot_arena_raw", input=src, cache_dir=tmp_path / "cache",
                                 split=SplitSettings(seed=1))
    rows[0]["conversation_a"][1]["content"] += " (edited)"
    write_jsonl(src, rows)
    edited = build_benchmark("chatbot_arena_raw", input=src, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.pkl"))) == 3
    assert edited.content_hash != first.content_hash and other_seed.manifest.seed == 1
