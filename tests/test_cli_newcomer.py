"""What a newcomer met: repeated --dataset/--methods, counts in words, the compare help and its
interval notes, unexpanded globs, misspelt options, where `data audit` writes, and progress bars in
a pipe. Expected values are worked out by hand in each test."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from personalrewardbench.cli import main
from personalrewardbench.cli_options import plural
from personalrewardbench.intervals import choose_interval, difference_interval, interval_note

REPO = Path(__file__).resolve().parents[1]


def _prb(argv: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """`prb` in its own process with pipes for stdout and stderr (so stderr is not a terminal)."""
    full = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "PRB_CACHE_DIR": str(cwd / "cache"), **env}
    full.pop("PRB_DEBUG", None)
    code = "import sys; from personalrewardbench.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *argv], cwd=cwd, env=full, capture_output=True, text=True,
                          timeout=300)


# --- repeated names, counts in words ----------------------------------------------------------------


def test_plural() -> None:
    assert [plural(n, "method") for n in (0, 1, 2)] == ["0 methods", "1 method", "2 methods"]
    assert plural(1, "results folder") == "1 results folder" and plural(3, "query", "queries") == "3 queries"


def test_repeated_datasets_and_methods_run_once_in_order(monkeypatch) -> None:
    """`--dataset synthetic --dataset synthetic-sample --dataset synthetic`: one benchmark (the two names
    load the same content), and `--methods length,random,length`: length then random."""
    from personalrewardbench import run_command

    args = argparse.Namespace(dataset=["synthetic", "synthetic-sample", "synthetic"], methods="length,random,length",
                              backend="transformers", model=None, full=False, users=None)
    plan = run_command.make_plan(args)
    assert plan.methods == ["length", "random"]
    assert [b.name for b in plan.benchmarks] == ["synthetic-sample"] and plan.specs == ["synthetic"]
    assert "--methods length named more than once; each runs once" in plan.notes
    assert "--dataset synthetic named more than once; each runs once" in plan.notes
    assert any(n.startswith("--dataset synthetic-sample is the same benchmark as --dataset synthetic") for n in plan.notes)


def test_prb_run_prints_counts_in_words(tmp_path: Path, capsys) -> None:
    assert main(["run", "--dataset", "synthetic", "--dataset", "synthetic", "--methods", "length", "--out",
                 str(tmp_path / "r"), "--bootstrap", "0", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"prb run: 1 evaluation (1 method x 1 dataset) -> {tmp_path / 'r'}/" in out
    assert len(list((tmp_path / "r").rglob("results.json"))) == 1


# --- compare: help and interval notes ------------------------------------------------------------------


def test_compare_help_states_the_interval_rule_and_the_test(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "paired-bootstrap 95% CIs" not in text
    for words in ("Wilson score interval below 50 effective units", "exact Clopper-Pearson interval when one run "
                  "wins every unit", "two-sided exact sign test", "prb compare prb-output/results/synthetic-sample/"):
        assert words in text, words


def test_interval_notes_say_why() -> None:
    # 40 users, 30 favour the first run, 10 the second: 40 effective users < 50 -> Wilson
    w, v = np.ones(40), np.r_[np.ones(30), -np.ones(10)]
    _, kind, detail = difference_interval(0.5, np.full(100, 0.5), w, v, "user", 100)
    assert (kind, interval_note(kind, detail)) == ("wilson", "Wilson score: 40 users < 50, conservative")
    # every one of 12 pairs favours the first run -> exact
    _, kind, detail = difference_interval(1.0, np.ones(100), np.ones(12), np.ones(12), "pair", 100)
    assert kind == "clopper-pearson"
    assert interval_note(kind, detail) == ("exact Clopper-Pearson: the first run was right and the other wrong on "
                                           "every judgment, conservative")
    # 100 pairs, 3 differ from the rest -> Wilson for too few off-mode units
    _, kind, detail = choose_interval(0.03, np.linspace(0, 0.06, 100), np.ones(100), "pair", 100,
                                      np.r_[np.zeros(97), np.ones(3)])
    assert interval_note(kind, detail) == ("Wilson score: only 3 pairs differ from the most common pair result "
                                           "(< 10), conservative")
    _, kind, detail = choose_interval(0.5, np.array([]), np.ones(80), "pair", 0, np.r_[np.zeros(40), np.ones(40)])
    assert interval_note(kind, detail) == "Wilson score: no bootstrap (--bootstrap 0), conservative"


def test_submission_baseline_line_says_why_an_interval_is_conservative() -> None:
    from personalrewardbench.submissions.report import _why

    c = {"ci_kind": {"ci95": "bootstrap-basic", "ci95_users": "wilson"},
         "ci_detail": {"ci95": {"unit": "pair"}, "ci95_users": {"unit": "user", "n_effective": 40.0,
                                                               "reason": "40 effective users (< 50): too few"}}}
    assert _why(c, "ci95") == ""
    assert _why(c, "ci95_users") == " (Wilson score: 40 users < 50, conservative)"


# --- globs, misspelt options, audit output, bars in a pipe ---------------------------------------------


@pytest.mark.parametrize("argv", [["compare", "{t}/res/*/length/s0-*", "{t}/res/x"], ["merge", "{t}/res/s?-*"],
                                  ["verify", "{t}/res/[ab]*"], ["leaderboard", "build", "--results", "{t}/res/*"]])
def test_an_unexpanded_glob_is_named(tmp_path: Path, capsys, argv: list[str]) -> None:
    (tmp_path / "res").mkdir()
    args = [a.replace("{t}", str(tmp_path)) for a in argv]
    assert main([*args, *(["--out", str(tmp_path / "site")] if argv[0] == "leaderboard" else [])]) == 2
    err = capsys.readouterr().err
    pattern = next(a for a in args if "*" in a or "?" in a or "[" in a)
    assert f"prb: error: no run folder matches {pattern} " in err


@pytest.mark.parametrize("argv,hint", [
    (["run", "--metods", "length"], "unrecognized arguments: --metods length; did you mean --methods?"),
    (["evaluate", "--method", "length", "--bootstrp", "3"], "did you mean --bootstrap?"),
    (["run", "--metods=x", "--seeed", "2"], "did you mean --methods (for --metods), --seed (for --seeed)?"),
    (["data", "stats", "--datasett", "x"], "required: --dataset; did you mean --dataset (for --datasett)?"),
])
def test_a_misspelt_option_gets_the_closest_one(capsys, argv: list[str], hint: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert hint in err and len(err.splitlines()) == 3, err


def test_no_suggestion_for_an_option_nothing_resembles(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["evaluate", "--frobnicate"])
    assert "did you mean" not in capsys.readouterr().err


def test_data_audit_writes_under_prb_output_and_says_where(tmp_path: Path) -> None:
    proc = _prb(["data", "audit", "--dataset", "synthetic"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "prb-output" / "synthetic-sample-audit.json").is_file()
    assert not list(tmp_path.glob("*-audit.json"))
    assert "wrote prb-output/synthetic-sample-audit.json" in proc.stdout


def test_no_progress_bars_when_stderr_is_a_pipe(tmp_path: Path) -> None:
    """Without --quiet, stderr piped: no tqdm bar (its "%|" and "q/s]" marks) in the log."""
    proc = _prb(["evaluate", "--method", "embed-logreg", "--dataset", "synthetic", "--users", "4", "--bootstrap", "0",
                 "--out", str(tmp_path / "r")], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "%|" not in proc.stderr and "q/s]" not in proc.stderr and "\r" not in proc.stderr, proc.stderr[-2000:]
