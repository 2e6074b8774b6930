"""A shard that `prb merge` joined is not shown as its own subset table once the merged run is on the board."""

from __future__ import annotations

from pathlib import Path

from personalrewardbench.leaderboard.build import build_site
from personalrewardbench.leaderboard.verification import collect_runs
from personalrewardbench.methods import load_method
from personalrewardbench.runs import merge_runs

from .conftest import MINI, evaluate_into, mini_benchmark


def _shards(root: Path, spec: str, n: int = 2) -> list[Path]:
    return [evaluate_into(root, load_method("length"), mini_benchmark(), spec=spec, shard=(i, n)) for i in range(n)]


def test_shards_show_until_merged_then_the_merged_run_stands_for_them(standard_results: tuple[Path, Path],
                                                                       tmp_path: Path) -> None:
    spec = str(standard_results[1])
    results = tmp_path / "results"
    shards = _shards(results, spec)
    runs, _ = collect_runs([results])
    assert sorted(r.shard for r in runs) == ["0/2", "1/2"]  # unmerged: each shard is a (subset) row
    merged_dir = results / MINI / "length" / "s0-merged-test"
    merge_runs(shards, merged_dir)
    runs, skipped = collect_runs([results])
    assert skipped == []
    assert [r.shard for r in runs] == [None]
    (merged,) = runs
    assert merged.full and len(merged.users) == 16  # mini_benchmark has 16 users
    assert [Path(p).name for p in merged.merged_shards] == [d.name for d in sorted(shards)]
    site = tmp_path / "site"
    report = build_site([results], site, include_reported=False, plots=False)
    html = (site / "index.html").read_text()
    assert "join shards with" not in html and "Subset runs" not in html
    assert "Shards joined into this run" in (site / "methods" / "length.html").read_text()
    assert len(report.runs) == 1


def test_a_merged_run_identical_to_a_full_run_still_supersedes_its_shards(standard_results: tuple[Path, Path],
                                                                          tmp_path: Path) -> None:
    """The merged run of `length` is identical to the full `length` run (same users, config): one row
    stands for both, and the shards are still not shown."""
    spec = str(standard_results[1])
    results = tmp_path / "results"
    evaluate_into(results, load_method("length"), mini_benchmark(), spec=spec)
    shards = _shards(results, spec)
    merge_runs(shards, results / MINI / "length" / "s0-merged-test")
    runs, _ = collect_runs([results])
    assert [r.shard for r in runs] == [None]
    assert len(runs[0].identical) == 1 and len(runs[0].merged_shards) == 2


def test_a_shard_of_another_split_stays(standard_results: tuple[Path, Path], tmp_path: Path) -> None:
    """Only the shards a merged run names are dropped: a shard of a 3-way split stays a subset row."""
    spec = str(standard_results[1])
    results = tmp_path / "results"
    merge_runs(_shards(results, spec), results / MINI / "length" / "s0-merged-test")
    evaluate_into(results, load_method("length"), mini_benchmark(), spec=spec, shard=(0, 3), tag="-of3")
    runs, _ = collect_runs([results])
    assert sorted(r.shard or "" for r in runs) == ["", "0/3"]
