"""`--cache-dir` is the cache root on every verb; `--users all|N`; the run plan's user counts."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import pytest

from personalrewardbench.cli import main
from personalrewardbench.cli_options import apply_cache_dir, users_count


def test_cache_dir_is_the_cache_root_for_data_builds(tmp_path: Path, summarize_dir: Path, capsys) -> None:
    before = os.environ.get("PRB_CACHE_DIR")
    cache = tmp_path / "cache"
    assert main(["data", "build", "--source", "summarize_feedback", "--input", str(summarize_dir),
                 "--out", str(tmp_path / "built"), "--cache-dir", str(cache)]) == 0
    assert list((cache / "data").glob("*.pkl")) and not list(cache.glob("*.pkl"))
    assert os.environ.get("PRB_CACHE_DIR") == before  # set for the command only
    assert main(["data", "build", "--source", "summarize_feedback", "--input", str(summarize_dir),
                 "--out", str(tmp_path / "built2"), "--data-cache-dir", str(tmp_path / "only-data")]) == 0
    assert list((tmp_path / "only-data").glob("*.pkl"))


def test_old_layouts_are_still_used_with_a_note(tmp_path: Path, capsys) -> None:
    old_llm = tmp_path / "old-llm"
    old_llm.mkdir()
    (old_llm / "requests.sqlite3").write_bytes(b"")
    args = argparse.Namespace(cache_dir=str(old_llm), backend="transformers", llm_cache_dir=None)
    apply_cache_dir(args)
    assert args.llm_cache_dir == str(old_llm) and "old layout" in capsys.readouterr().err
    old_data = tmp_path / "old-data"
    old_data.mkdir()
    (old_data / "0123abcd.pkl").write_bytes(b"")
    args = argparse.Namespace(cache_dir=str(old_data), data_cache_dir=None)
    apply_cache_dir(args)
    assert args.data_cache_dir == str(old_data) and "--data-cache-dir" in capsys.readouterr().err
    os.environ.pop("PRB_CACHE_DIR", None)


@pytest.mark.parametrize("text,expected", [("all", None), ("ALL", None), ("3", 3)])
def test_users_count(text: str, expected: int | None) -> None:
    assert users_count(text) == expected


@pytest.mark.parametrize("text", ["0", "-2", "many", "2.5"])
def test_users_count_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="number of users"):
        users_count(text)


def test_evaluate_users_all_and_too_many(tmp_path: Path, capsys) -> None:
    from personalrewardbench.data.store import save_benchmark
    from personalrewardbench.data.synthetic import sample_benchmark

    save_benchmark(sample_benchmark(n_users=3, n_train=(3, 3), n_val=1, n_test=2), tmp_path / "b")
    base = ["evaluate", "--method", "length", "--dataset", str(tmp_path / "b"), "--out", str(tmp_path / "r"),
            "--quiet", "--bootstrap", "20"]
    assert main([*base, "--users", "all"]) == 0
    assert re.search(r"users / test pairs +3 / 6", capsys.readouterr().out)
    assert main([*base, "--users", "500"]) == 0
    cap = capsys.readouterr()
    assert "--users 500: synthetic-sample has only 3 users; evaluating all 3" in cap.err
    assert re.search(r"users / test pairs +3 / 6", cap.out)


def test_cpu_plan_runs_heavy_methods_on_a_user_subset(monkeypatch) -> None:
    from personalrewardbench import run_command
    from personalrewardbench.data.synthetic import sample_benchmark

    bench = sample_benchmark(n_users=12, n_train=(3, 3), n_val=1, n_test=1)
    monkeypatch.setattr(run_command, "load_benchmarks", lambda specs, notes: ([bench], [None]))
    args = argparse.Namespace(dataset=None, methods="length,embed-logreg,bt-rm,default-judge,synthesizeme-just-personas",
                              backend="transformers", model=None, full=False, users=None)
    plan = run_command.make_plan(args)
    assert {m: plan.users_for(m) for m in plan.methods} == {
        "length": None, "embed-logreg": None, "bt-rm": 8, "default-judge": 8, "synthesizeme-just-personas": 4}
    assert any("bt-rm, default-judge on a seeded 8; synthesizeme-just-personas on a seeded 4 of the users" in n
               and "--users all" in n for n in plan.notes), plan.notes
    for change in ({"users": "all"}, {"full": True}, {"model": "some/model"}):
        plan = run_command.make_plan(argparse.Namespace(**{**vars(args), **change}))
        assert all(plan.users_for(m) is None for m in plan.methods), change
    plan = run_command.make_plan(argparse.Namespace(**{**vars(args), "users": "30"}))
    assert plan.users_for("bt-rm") == 30 and any("has only 12 users" in n for n in plan.notes)
    plan = run_command.make_plan(argparse.Namespace(**{**vars(args), "users": "6"}))
    assert plan.users_for("bt-rm") == 6 and plan.users_for("synthesizeme-just-personas") == 6
