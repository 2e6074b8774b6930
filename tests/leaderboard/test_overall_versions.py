"""The Overall table ranks each entry over one table per benchmark name (its current version), never over two
versions of one benchmark as if they were two datasets. Mean ranks below are computed by hand."""

from __future__ import annotations

import random

from personalrewardbench.leaderboard.collect import RunResult
from personalrewardbench.leaderboard.rows import overall_section
from personalrewardbench.leaderboard.table import build_board


def _run(dataset: str, version: str, method: str, acc: float, how: str) -> RunResult:
    return RunResult(dataset=dataset, method=method, tier="reproduced", base_model=None, status="ok",
                     scores={"accuracy": acc}, content_hash=version * 8, users=("u1", "u2"), benchmark_users=2,
                     how_verified=how)


ARENA_OLD = "from the build cache (/cache/data/x.pkl)"
ARENA_NOW = "by name (chatbot_arena)"


def _runs() -> list[RunResult]:
    return [
        # an old version of chatbot_arena, still verifiable from the build cache
        _run("chatbot_arena", "a", "x", 0.9, ARENA_OLD), _run("chatbot_arena", "a", "y", 0.5, ARENA_OLD),
        # the version the harness loads by that name today
        _run("chatbot_arena", "b", "x", 0.4, ARENA_NOW), _run("chatbot_arena", "b", "y", 0.6, ARENA_NOW),
        _run("prism", "c", "x", 0.7, "by name (prism)"), _run("prism", "c", "y", 0.6, "by name (prism)"),
        _run("prism", "c", "z", 0.5, "by name (prism)"),
    ]


def test_overall_ranks_only_the_current_version_of_each_benchmark() -> None:
    board = build_board(_runs())
    assert [(g.dataset, g.content_hash[0]) for g in board.groups] == [("chatbot_arena", "a"), ("chatbot_arena", "b"),
                                                                       ("prism", "c")]  # every table is still shown
    assert [(g.dataset, g.content_hash[0]) for g in board.overall_groups] == [("chatbot_arena", "b"), ("prism", "c")]
    mean = {e.method: e.mean_rank for e in board.overall}
    # x: rank 2 on arena b, 1 on prism -> 1.5 (counting the old arena table too would give (1 + 2 + 1) / 3)
    assert mean == {"x": 1.5, "y": 1.5, "z": 3.0}
    html = overall_section(board.overall, board.overall_groups)
    assert "only its current version counts" in html and "dates are never used" in html
    assert html.count("Chatbot Arena") == 1


def test_without_a_name_lookup_the_version_with_more_rows_counts_whatever_the_order() -> None:
    local = "from the build cache (/cache/data/y.pkl)"
    runs = [_run("mine", "d", m, 0.5 + i / 10, local) for i, m in enumerate("pqr")]
    runs += [_run("mine", "e", m, 0.5 + i / 10, local) for i, m in enumerate("pq")]
    runs += [_run("prism", "c", m, 0.6, "by name (prism)") for m in "pq"]
    for seed in range(4):
        random.Random(seed).shuffle(runs)
        board = build_board(runs)
        assert {(g.dataset, g.content_hash[0]) for g in board.overall_groups} == {("mine", "d"), ("prism", "c")}
    # the version still found where its runs recorded loading it beats one kept only in the cache
    runs += [_run("mine", "f", "s", 0.9, "from the recorded path /data/mine")]
    assert ("mine", "f") in {(g.dataset, g.content_hash[0]) for g in build_board(runs).overall_groups}
