"""`prb submission validate` compiles the adapter: a syntax error names the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from personalrewardbench.source_check import python_syntax_problems
from personalrewardbench.submissions.spec import SubmissionError, validate_folder
from personalrewardbench.submissions.template import write_template


def test_syntax_errors_name_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "ok.py").write_text("x = 1\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "bad.py").write_text("a = 1\nb = 2\nif a == b\n    pass\n")  # line 3 lacks ':'
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "ignored.py").write_text("def (:\n")  # results/ is written by CI, not code
    (problem,) = python_syntax_problems(tmp_path)
    assert problem.startswith(f"{tmp_path / 'pkg' / 'bad.py'}, line 3")
    assert python_syntax_problems(tmp_path / "pkg" / "missing") == []


def test_validate_fails_a_template_whose_adapter_does_not_compile(tmp_path: Path) -> None:
    folder = write_template("my-method", tmp_path)
    assert validate_folder(folder).name == "my-method"
    text = (folder / "adapter.py").read_text()
    n_lines = len(text.splitlines())
    (folder / "adapter.py").write_text(text + "    return [\n")  # unexpected indent on the line after the file
    with pytest.raises(SubmissionError, match=rf"adapter\.py, line {n_lines + 1}"):
        validate_folder(folder)


@pytest.mark.parametrize("where", ["helper.py", "adapter.py"])
def test_an_expression_nested_past_the_compiler_is_a_problem_not_a_crash(tmp_path: Path, capsys, where: str) -> None:
    from personalrewardbench.cli import main

    folder = write_template("my-method", tmp_path)
    deep = "x = " + "1+" * 30000 + "1\n"  # CPython's compiler raises RecursionError on this
    with pytest.raises(RecursionError):
        compile(deep, "probe", "exec")
    target = folder / where
    target.write_text((target.read_text() if target.exists() else "") + deep)
    assert main(["submission", "validate", str(folder)]) == 1
    out = capsys.readouterr()
    err = out.out + out.err
    assert f"{where}: cannot be compiled (nested too deeply for the Python compiler)" in err
    assert "Traceback" not in err and "RecursionError" not in err
