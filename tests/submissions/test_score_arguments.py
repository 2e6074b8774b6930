"""`prb submission score`: argument mistakes are one `prb: error:` line (exit 2) before any sandbox starts;
`prb submission validate` names the template's placeholders; every option says what it does."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from personalrewardbench.cli import main as prb
from personalrewardbench.submissions.template import write_template

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh template submission; scoring it fails the test (every case here must stop before)."""
    import personalrewardbench.submissions.scoring as scoring

    def no_scoring(*args, **kwargs):  # noqa: ANN002, ANN003
        raise AssertionError("a sandbox was started for an argument mistake")

    monkeypatch.setattr(scoring, "score_submission", no_scoring)
    monkeypatch.setattr(scoring, "run_baselines", no_scoring)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PRB_CACHE_DIR", str(tmp_path / "cache"))
    return write_template("my-method", tmp_path / "submissions")


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert prb(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("prb: error: ") and len(err.strip().splitlines()) == 1, (out, err)
    return err


@pytest.mark.parametrize("given,suggested", [
    ("my-method-strnog", "did you mean: my-method-strong?"),  # a typo of a variant's full name
    ("strong", "did you mean: my-method-strong?"),  # a variant's suffix alone
    ("my-methd", "did you mean: my-method?"),
    ("something-else", "pass one of its names"),
])
def test_unknown_method_is_named_with_the_closest(folder: Path, capsys, given: str, suggested: str) -> None:
    err = _error(["submission", "score", str(folder), "--method", given], capsys)
    assert f"--method: unknown method {given!r} in submission my-method; {suggested}" in err
    assert "(its methods: my-method, my-method-strong; nothing was scored)" in err


def test_every_unknown_method_in_one_message(folder: Path, capsys) -> None:
    err = _error(["submission", "score", str(folder), "--method", "my-method", "--method", "a-typo",
                  "--method", "strnog"], capsys)
    assert "'a-typo'" in err and "'strnog'" in err and "'my-method' in" not in err


def test_repeated_method_names_are_scored_once(folder: Path) -> None:
    from personalrewardbench.submissions.commands import check_method_names
    from personalrewardbench.submissions.spec import validate_folder

    sub = validate_folder(folder)
    assert check_method_names(sub, ["my-method-strong", "my-method", "my-method-strong"]) == [
        "my-method-strong", "my-method"]
    assert check_method_names(sub, []) == []


@pytest.mark.parametrize("option", ["--out", "--baseline-results"])
@pytest.mark.parametrize("inside", ["results", ".", "deep/er"])
def test_output_folders_inside_the_submission_are_refused(folder: Path, capsys, option: str, inside: str) -> None:
    target = folder / inside
    extra = ["--baseline", "length"] if option == "--baseline-results" else []
    err = _error(["submission", "score", str(folder), option, str(target), *extra], capsys)
    assert f"{option} {target} is inside the submission folder {folder}" in err
    assert "pick a folder outside it" in err and "(nothing was scored)" in err
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "adapter.py", "submission.toml"]


def test_baseline_results_inside_are_fine_without_baselines(folder: Path, monkeypatch) -> None:
    """No --baseline: --baseline-results is never written, so it is not checked (scoring then starts)."""
    monkeypatch.setenv("PRB_DEBUG", "1")  # the stand-in scorer's AssertionError propagates
    with pytest.raises(AssertionError, match="a sandbox was started"):
        prb(["submission", "score", str(folder), "--baseline-results", str(folder / "b"), "--quiet"])


def test_a_cache_inside_the_submission_is_refused(folder: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("PRB_CACHE_DIR", str(folder / "cache"))
    err = _error(["submission", "score", str(folder)], capsys)
    assert f"the harness's cache {folder / 'cache'}" in err and "set PRB_CACHE_DIR to a folder outside it" in err
    assert not (folder / "cache").exists()


def test_validate_names_the_templates_placeholders(folder: Path, capsys) -> None:
    capsys.readouterr()
    assert prb(["submission", "validate", str(folder)]) == 0  # notes, not failures
    out = capsys.readouterr().out
    notes = [line.strip() for line in out.splitlines() if line.strip().startswith("note:")]
    assert any("[submission].authors" in n and "'Your Name'" in n for n in notes), out
    assert any("[submission].contact" in n and "'https://github.com/your-handle'" in n for n in notes), out
    assert any("[submission].description" in n for n in notes), out
    assert any("README.md" in n and "template" in n for n in notes), out
    toml = folder / "submission.toml"
    text = toml.read_text().replace('"Your Name"', '"Ada Lovelace"').replace("your-handle", "ada")
    text = text.replace("Replace this with a paragraph on your method.", "A paragraph.")
    toml.write_text(text)
    (folder / "README.md").write_text("# my-method\n\nWhat it does.\n")
    assert prb(["submission", "validate", str(folder)]) == 0
    assert "note:" not in capsys.readouterr().out


def _options_without_help(parser: argparse.ArgumentParser, path: str) -> list[str]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                out += _options_without_help(child, f"{path} {name}")
        elif not action.help and action.dest != "help":
            out.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    return out


def test_every_submission_option_says_what_it_does() -> None:
    from personalrewardbench.cli import build_parser

    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import score_submissions
    finally:
        sys.path.remove(str(REPO / "scripts"))
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["submission"]
    assert _options_without_help(sub, "prb submission") == []
    assert _options_without_help(score_submissions.build_parser(), "score_submissions.py") == []
