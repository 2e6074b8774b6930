"""The published benchmark (MichaelR207/*_personalized_0125 schema) from local copies."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from personalrewardbench.data import DataError, load_benchmark
from personalrewardbench.data.published import benchmark_from_rows, load_published
from tests.data.helpers import PRISM_DIR, PUBLISHED_DIR, hub_copy, read_jsonl, write_jsonl

SPLIT_OF_HUB = {"train": "train", "validation": "val", "test": "test"}


def _file_rows(repo: str) -> list[dict]:
    return [r for s in SPLIT_OF_HUB for r in read_jsonl(PUBLISHED_DIR / repo / f"{s}.jsonl")]


@pytest.mark.parametrize("repo,name", [("chatbot_arena_personalized_0125", "chatbot_arena"),
                                       ("prism_personalized_0125", "prism")])
def test_hub_copy_keeps_users_splits_and_counts(tmp_path, repo, name):
    bench = load_benchmark(hub_copy(tmp_path, repo))
    rows = _file_rows(repo)
    assert bench.name == name
    assert bench.user_ids() == sorted({r["user_id"] for r in rows})
    want = Counter((r["user_id"], r["split"]) for r in rows)
    got = Counter((p.user_id, p.split) for p in bench.pairs)
    assert got == want
    for s in ("train", "val", "test"):
        assert bench.manifest.counts["splits"][s]["pairs"] == sum(1 for r in rows if r["split"] == s)
    # every row is there, with its texts and its extra columns in meta
    by_conv = {p.meta["conversation_id"]: p for p in bench.pairs}
    for r in rows:
        p = by_conv[r["conversation_id"]]
        assert p.chosen == r["chosen"]["content"] and p.rejected == r["rejected"]["content"]
        assert [m.content for m in p.context] == [m["content"] for m in r["context"]]
        assert p.meta["flip"] == r["flip"] and p.meta["agreement"] == r["agreement"]
        assert p.meta["prediction_Qwen/Qwen2.5-72B-Instruct"] == r["prediction_Qwen/Qwen2.5-72B-Instruct"]


def test_multi_turn_context_roles_are_normalized(tmp_path):
    bench = load_benchmark(hub_copy(tmp_path, "prism_personalized_0125"))
    multi = [p for p in bench.pairs if len(p.context) == 3]
    assert multi, "fixture has multi-turn contexts"
    assert all([m.role for m in p.context] == ["user", "assistant", "user"] for p in multi)  # "model" -> assistant


def test_jsonl_file_in_published_schema(tmp_path):
    rows = _file_rows("chatbot_arena_personalized_0125")
    f = write_jsonl(tmp_path / "mine.jsonl", rows)
    bench = load_benchmark(f)
    assert bench.name == "mine"
    assert len(bench.pairs) == len(rows)




def test_prism_profiles_join_survey(tmp_path):
    bench = load_benchmark(hub_copy(tmp_path, "prism_personalized_0125"), survey=PRISM_DIR / "survey.jsonl")
    assert bench.profiles["user101"]["age"] == "25-34 years old"
    assert bench.profiles["user101"]["location"]["reside_country"] == "United Kingdom"
    assert "user_id" not in bench.profiles["user101"]
    assert bench.profiles["user999"] is None  # no survey row
    assert bench.has_profiles()
    without = load_benchmark(hub_copy(tmp_path / "b", "prism_personalized_0125"))
    assert not without.has_profiles() and without.manifest.warnings["prism_without_survey"] == 1


def test_missing_core_field_names_row_and_field(tmp_path):
    rows = _file_rows("chatbot_arena_personalized_0125")
    del rows[3]["rejected"]
    with pytest.raises(DataError, match=r"^bad: bad\.jsonl line 4: missing field\(s\) \['rejected'\]"):
        load_benchmark(write_jsonl(tmp_path / "bad.jsonl", rows))


def test_benchmark_from_rows_pair_ids_are_order_independent():
    rows = _file_rows("prism_personalized_0125")
    a = benchmark_from_rows(rows, name="prism", sources=[{"id": "t"}])
    b = benchmark_from_rows(list(reversed(rows)), name="prism", sources=[{"id": "t"}])
    assert a.content_hash == b.content_hash
    assert len({p.pair_id for p in a.pairs}) == len(rows)


def test_hub_load_fails_fast_offline_with_local_files_hint(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-prb-test-hf-home")
    t = time.monotonic()
    with pytest.raises(DataError) as exc:
        load_published("chatbot_arena", revision="0" * 40)
    assert time.monotonic() - t < 20
    msg = str(exc.value)
    assert "MichaelR207/chatbot_arena_personalized_0125" in msg and "Use local files" in msg and "--dataset" in msg


def test_hub_path_through_datasets_on_a_local_repo(tmp_path, monkeypatch):
    """The hub code path (datasets.load_dataset, hub split names, split agreement) on a local
    repo folder: load_dataset reads data/<split>-*.parquet the same way it reads the hub."""
    import functools

    import datasets

    from personalrewardbench.data import published

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    copy = hub_copy(tmp_path, "chatbot_arena_personalized_0125")
    local = load_benchmark(copy)
    monkeypatch.setitem(published.PUBLISHED_REPOS, "chatbot_arena", str(copy))
    monkeypatch.setattr(datasets, "load_dataset", functools.partial(datasets.load_dataset,
                                                                    cache_dir=str(tmp_path / "hf")))
    bench = load_benchmark("chatbot_arena")
    assert bench.name == "chatbot_arena" and bench.content_hash == local.content_hash
    assert bench.manifest.sources[0]["kind"] == "published-hub"
    assert bench.manifest.sources[0]["revision"] == published.PUBLISHED_REVISION
