"""submission.toml: parsing, every kind of mistake named with its fix, the template, the real folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from personalrewardbench.cli import main as prb
from personalrewardbench.submissions.sandbox import SandboxedMethod
from personalrewardbench.submissions.spec import (
    SubmissionError,
    find_submission_folders,
    read_submission,
    validate_folder,
)
from personalrewardbench.submissions.template import write_template
from tests.submissions.conftest import run_method

REPO = Path(__file__).resolve().parents[2]

GOOD = '''[submission]
name = "my-method"
authors = ["Ada Lovelace", "Alan Turing"]
contact = "ada@example.org"
paper = "https://arxiv.org/abs/2506.05598"
description = "A method."
license = "MIT"

[method]
entry = "adapter:MyMethod"
config = { alpha = 1.0, mode = "a" }

[requirements]
llm = true
datasets = ["chatbot_arena", "prism"]

[variants.b]
config = { mode = "b" }
description = "Mode b."
'''


def _write(tmp_path: Path, text: str, name: str = "my-method") -> Path:
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    (folder / "submission.toml").write_text(text)
    return folder


def test_parses_every_field(tmp_path):
    sub = read_submission(_write(tmp_path, GOOD))
    assert sub.name == "my-method" and sub.authors == ("Ada Lovelace", "Alan Turing")
    assert sub.entry_module == "adapter" and sub.entry_class == "MyMethod"
    assert sub.requirements.llm and not sub.requirements.gpu
    assert sub.requirements.allows_dataset("prism") and not sub.requirements.allows_dataset("tiny")
    assert sub.method_names() == ["my-method", "my-method-b"]
    assert sub.config_for("my-method-b") == {"alpha": 1.0, "mode": "b"}
    assert sub.config_for(None) == {"alpha": 1.0, "mode": "a"}


BAD = [
    ('name = "my-method"', 'name = "My_Method"', "[submission].name 'My_Method' must be lowercase", "'my-method'"),
    ('authors = ["Ada Lovelace", "Alan Turing"]\n', "", "[submission].authors is missing", 'authors = ["Your Name"]'),
    ('contact = "ada@example.org"', 'contact = "ada"', "[submission].contact 'ada' must be an http(s) URL or an email",
     None),
    ('paper = "https://arxiv.org/abs/2506.05598"', 'paper = "ftp://x.org/p"', "[submission].paper", "http(s) URL"),
    ('entry = "adapter:MyMethod"', 'entry = "adapter.MyMethod"', "[method].entry 'adapter.MyMethod' must be",
     '"adapter:MyMethod"'),
    ('config = { alpha = 1.0, mode = "a" }', 'config = "alpha=1"', "[method].config must be a table", None),
    ("llm = true", 'llm = "yes"', "[requirements].llm must be true or false", None),
    ('datasets = ["chatbot_arena", "prism"]', "datasets = []", "[requirements].datasets must be a non-empty list",
     '["any"]'),
    ("[variants.b]", "[variants.B_2]", "variant name [variants.<suffix>] 'B_2'", None),
    ('license = "MIT"', 'license = "MIT"\nlicence = "MIT"', "unknown key 'licence' in [submission]", "license"),
    ("[requirements]", "[requirement]", "unknown table [requirement]", "[requirements]"),
    ('description = "A method."', 'description = ""', "[submission].description must be a non-empty string", None),
]


@pytest.mark.parametrize("old,new,message,fix", BAD, ids=[b[2][:40] for b in BAD])
def test_each_mistake_is_named_with_its_fix(tmp_path, old, new, message, fix):
    folder = _write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(SubmissionError) as info:
        read_submission(folder)
    msg = str(info.value)
    assert str(folder / "submission.toml") in msg
    assert message in msg
    if fix:
        assert fix in msg


def test_all_problems_are_listed_at_once(tmp_path):
    text = GOOD.replace('name = "my-method"', 'name = "X"').replace('license = "MIT"', "")
    with pytest.raises(SubmissionError, match=r"2 problem\(s\)") as info:
        read_submission(_write(tmp_path, text))
    assert "[submission].license is missing" in str(info.value)


def test_toml_syntax_and_missing_file(tmp_path):
    with pytest.raises(SubmissionError, match="not valid TOML"):
        read_submission(_write(tmp_path, GOOD + "\n[broken"))
    with pytest.raises(SubmissionError, match="prb submission new"):
        read_submission(tmp_path / "nothing-here")


def test_folder_checks_readme_entry_module_and_class(tmp_path):
    parent = tmp_path / "submissions"
    parent.mkdir()
    folder = _write(parent, GOOD, name="other-name")
    with pytest.raises(SubmissionError) as info:
        validate_folder(folder)
    msg = str(info.value)
    assert "folder name 'other-name' differs from [submission].name 'my-method'" in msg
    assert "README.md is missing" in msg
    assert "module file adapter.py not found" in msg
    (folder / "adapter.py").write_text("class Other:\n    pass\n")
    # nothing in the module can bind MyMethod: refused, naming the fix
    with pytest.raises(SubmissionError, match=r"adapter.py defines no 'MyMethod'.*fix the class name"):
        validate_folder(folder)


def test_template_validates_and_scores_in_the_sandbox(tmp_path, tiny):
    folder = write_template("fresh-idea", tmp_path)
    sub = validate_folder(folder)
    assert sub.method_names() == ["fresh-idea", "fresh-idea-strong"]
    with SandboxedMethod(folder, "fresh-idea") as m:
        preds = run_method(m, tiny)
        arts = m.artifacts()
    assert all(0.0 <= p <= 1.0 for p in preds)
    # users 0 and 2 prefer longer answers, user 1 shorter: the template learns it
    assert arts["user0"].startswith("length lean +") and arts["user1"].startswith("length lean -")
    with SandboxedMethod(folder, "fresh-idea-strong") as m:  # the non-personalized control
        run_method(m, tiny)
        arts = m.artifacts()
    # users 0 and 2 chose the longer answer in all 6 train+val pairs, user 1 in none: pooled rate
    # (12 + 1) / (18 + 2) = 0.65, lean 2 * 0.65 - 1 = +0.30 for every user
    assert arts == {u: "length lean +0.30" for u in ("user0", "user1", "user2")}
    with pytest.raises(SubmissionError, match="already exists"):
        write_template("fresh-idea", tmp_path)
    with pytest.raises(SubmissionError, match="'fresh-idea-2'"):
        write_template("Fresh Idea 2", tmp_path)


def test_cli_new_and_validate(tmp_path, capsys):
    assert prb(["submission", "new", "cli-made", "--dir", str(tmp_path)]) == 0
    assert prb(["submission", "validate", str(tmp_path / "cli-made")]) == 0
    (tmp_path / "cli-made" / "README.md").unlink()
    assert prb(["submission", "validate", str(tmp_path / "cli-made")]) == 1
    assert "README.md is missing" in capsys.readouterr().out


def test_repository_method_folders_parse():
    folders = find_submission_folders(REPO / "baselines") + find_submission_folders(REPO / "submissions")
    assert any(f.name == "embed-direction" for f in folders)
    for folder in folders:
        read_submission(folder)  # raises with the list of problems
    validate_folder(REPO / "submissions" / "embed-direction")
