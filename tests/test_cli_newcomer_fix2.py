"""A second newcomer's findings: hints that name the printing command's option, repeated single-value
options refused, the `prb run --users` default, where `prb leaderboard build` says it wrote, the site
folder of `prb run` checked first, `prb compare` given more than two folders, and `prb verify` with a
pattern that matches nothing. Expected values are worked out by hand in each test."""

from __future__ import annotations

import argparse
import fnmatch
import re
from pathlib import Path

import pytest

from personalrewardbench.cli import build_parser, main
from personalrewardbench.cli_options import SingleValueAction
from personalrewardbench.evaluate import run_id_for


@pytest.fixture
def offline(monkeypatch, tmp_path: Path) -> None:
    """No hub: the raw-source names fail at once with their local-files hint (no network)."""
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    monkeypatch.setenv("PRB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)


def _error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("prb: error: "), err
    return lines[0]


# --- 1. the local-files hint names the option of the command that prints it -----------------------------


@pytest.mark.parametrize("argv, survey", [
    (["data", "stats", "--dataset", "summarize_feedback"], False),
    (["evaluate", "--method", "length", "--dataset", "summarize_feedback"], False),
    (["run", "--methods", "length", "--dataset", "summarize_feedback", "--out", "r/results"], False),
    (["evaluate", "--method", "length", "--dataset", "prism_raw"], False),
    (["data", "stats", "--dataset", "prism_raw"], True),
])
def test_raw_source_hint_names_dataset_not_input(offline, capsys, argv: list[str], survey: bool) -> None:
    assert main(argv) == 2
    line = _error(capsys)
    assert "`--dataset DIR`" in line and "--input" not in line, line
    assert ("--survey" in line) is survey, line  # only `prb data` verbs have --survey


def test_data_build_keeps_its_input_hint(offline, capsys) -> None:
    assert main(["data", "build", "--source", "summarize_feedback", "--out", "b"]) == 2
    line = _error(capsys)
    assert "`--input DIR`" in line and "--dataset" not in line, line


def test_raw_files_without_records_name_dataset(offline, capsys, tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "notes.txt").write_text("x")
    assert main(["evaluate", "--method", "length", "--dataset", "./raw"]) == 2
    assert "--input" not in _error(capsys)


# --- 2. a single-value option given twice ---------------------------------------------------------------


@pytest.mark.parametrize("argv, option", [
    (["data", "validate", "--dataset", "a", "--dataset", "b"], "--dataset"),
    (["data", "audit", "--dataset", "a", "--dataset=b"], "--dataset"),
    (["data", "export", "--dataset", "a", "--dataset", "b", "--out", "x"], "--dataset"),
    (["evaluate", "--method", "length", "--method", "random", "--dataset", "synthetic"], "--method"),
    (["evaluate", "--method", "length", "--dataset", "a", "--dataset", "b"], "--dataset"),
    (["evaluate", "--method", "length", "--dataset", "a", "--out", "o1", "--out", "o2"], "--out"),
    (["run", "--methods", "length", "--methods", "random"], "--methods"),
    (["leaderboard", "build", "--out", "s1", "--out", "s2"], "--out"),
    (["compare", "A", "B", "--seed", "1", "--seed", "2"], "--seed"),
])
def test_a_repeated_single_value_option_is_refused(offline, capsys, argv: list[str], option: str) -> None:
    assert main(argv) == 2
    line = _error(capsys)
    assert line.startswith(f"prb: error: {option} given twice"), line
    assert "takes one" in line


def test_repeatable_options_still_collect_every_value() -> None:
    parser = build_parser()
    assert parser.parse_args(["data", "stats", "--dataset", "a", "--dataset", "b"]).dataset == ["a", "b"]
    assert parser.parse_args(["run", "--dataset", "a", "--dataset", "b"]).dataset == ["a", "b"]
    ns = parser.parse_args(["evaluate", "--method", "length", "--dataset", "a"])
    assert (ns.method, ns.dataset) == ("length", "a")
    assert not any(k.startswith("_prb") for k in vars(ns))  # no bookkeeping left in the namespace


def _all_actions(parser: argparse.ArgumentParser):
    for action in parser._actions:
        yield action
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                yield from _all_actions(child)


def test_every_single_value_option_refuses_a_repeat() -> None:
    plain = [a.option_strings for a in _all_actions(build_parser())
             if a.option_strings and type(a) is argparse._StoreAction]
    assert plain == []
    assert sum(isinstance(a, SingleValueAction) for a in _all_actions(build_parser())) > 40


# --- 3. the --users default of prb run -------------------------------------------------------------------


def test_run_help_states_the_cpu_plan_user_counts(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    users = text.split("--users USERS", 2)[2].split("--full use each", 1)[0].replace("- ", "-")
    # cpu_plan.py: 20 users on published data, bt-rm and the judges on 8, SynthesizeMe on 4
    assert "20 on a published dataset" in users
    assert "seeded 8" in users and "bt-rm" in users
    assert "synthesizeme on 4" in users


# --- 4. where `prb leaderboard build` says it wrote ----------------------------------------------------


def test_leaderboard_build_outside_the_repository_says_where(offline, capsys, tmp_path: Path) -> None:
    assert main(["leaderboard", "build", "--no-plots", "--no-reported"]) == 0
    out = capsys.readouterr().out
    assert "tracked site" not in out
    assert f"wrote the site into {(tmp_path / 'leaderboard' / 'site').resolve()}/" in out


def test_the_checkouts_site_is_the_tracked_site(repo_root: Path, tmp_path: Path) -> None:
    from personalrewardbench.leaderboard.commands import is_tracked_site

    assert is_tracked_site(repo_root / "leaderboard" / "site")
    (tmp_path / "leaderboard" / "site").mkdir(parents=True)
    (tmp_path / "leaderboard" / "site" / ".prb-site").write_text("")
    assert not is_tracked_site(tmp_path / "leaderboard" / "site")


# --- 5. prb run's site folder is checked before any evaluation -----------------------------------------


def test_run_refuses_a_foreign_site_folder_before_evaluating(offline, capsys, tmp_path: Path) -> None:
    (tmp_path / "p" / "site").mkdir(parents=True)
    (tmp_path / "p" / "site" / "notes.txt").write_text("mine")
    assert main(["run", "--methods", "length", "--dataset", "synthetic", "--out", str(tmp_path / "p" / "res")]) == 2
    captured = capsys.readouterr()
    assert "--site" in captured.err and "empty or new folder as --site" in captured.err
    assert "[1/1]" not in captured.out and not (tmp_path / "p" / "res").exists()  # nothing evaluated


# --- 6. prb compare with more than two folders ---------------------------------------------------------


def test_compare_names_every_folder_a_pattern_gave(offline, capsys) -> None:
    assert main(["compare", "r/s0-1a2b3c4d", "r/s0-u8-5e6f7a8b", "q/s0-9abcdef0"]) == 2
    line = _error(capsys)
    assert "compare takes two run folders; got 3: r/s0-1a2b3c4d, r/s0-u8-5e6f7a8b, q/s0-9abcdef0" in line
    assert "a pattern matched several; name the run folders" in line
    assert main(["compare", "only-one"]) == 2
    assert "got 1" in _error(capsys)


def test_compare_help_pattern_matches_only_all_user_runs() -> None:
    from personalrewardbench.evaluate_commands import COMPARE_EXAMPLES

    pattern = re.search(r"embed-logreg/(\S+)", COMPARE_EXAMPLES).group(1)
    fp = {"seed": 0, "method": "m"}
    full, subset, shard = run_id_for(fp, None, None), run_id_for(fp, 8, None), run_id_for(fp, None, (0, 4))
    assert re.fullmatch(r"s0-[0-9a-f]{8}", full) and subset.startswith("s0-u8-") and shard.startswith("s0-shard0of4-")
    assert fnmatch.fnmatchcase(full, pattern)
    for other in (subset, shard, "s0-merged-1a2b3c4d", "s0-u8-merged-1a2b3c4d"):
        assert not fnmatch.fnmatchcase(other, pattern), other


# --- 8. verify with a pattern that matches nothing -----------------------------------------------------


def test_verify_skips_an_unmatched_pattern_and_checks_the_rest(offline, capsys, tmp_path: Path) -> None:
    (tmp_path / "results").mkdir()
    main(["verify", "results", "submissions/*/results"])
    err = capsys.readouterr().err
    assert "no folder matches submissions/*/results" in err
    assert "no results.json found under results" in err  # the existing folder was still looked at
    assert main(["verify", "submissions/*/results"]) == 2
    assert "no run folder matches submissions/*/results" in _error(capsys)


def test_verify_help_examples_name_no_glob() -> None:
    from personalrewardbench.evaluate_commands import VERIFY_EXAMPLES

    assert "*" not in VERIFY_EXAMPLES


def test_run_demographics_on_data_without_profiles_warns_not_applicable(offline, capsys, monkeypatch) -> None:
    from personalrewardbench import run_command

    ns = build_parser().parse_args(["run", "--methods", "demographics", "--dataset", "synthetic"])
    plan = run_command.make_plan(ns)
    text = " ".join(plan.notes)
    assert "reported not applicable" in text and "slow" not in text
