"""`prb submission validate` reads the entry as the importer will, and stands aside (a note, never a
refusal) where the constructor cannot be read exactly; it reports every problem in one run; `new
--force` never overwrites a repository method folder; a missing folder suggests the existing one."""

from __future__ import annotations

import importlib.machinery
import subprocess
import sys
from pathlib import Path

import pytest

from personalrewardbench.errors import MethodError
from personalrewardbench.methods import _resolve_class, check_config
from personalrewardbench.submissions.folder_check import check_folder
from personalrewardbench.submissions.spec import SubmissionError, read_submission, validate_folder
from personalrewardbench.submissions.template import write_template

TOML = '''[submission]
name = "thing"
authors = ["A"]
contact = "a@example.org"
description = "d"
license = "MIT"

[method]
entry = "{entry}"
config = {config}
'''
METHOD = "from personalrewardbench import Method\n"
GOOD_INIT = "    def __init__(self, alpha=1.0):\n        pass\n"


def _folder(tmp_path: Path, files: dict[str, str], config: str = "{ alpha = 2.0 }",
            entry: str = "adapter:Thing") -> Path:
    folder = tmp_path / "thing"
    folder.mkdir(parents=True)
    (folder / "submission.toml").write_text(TOML.format(entry=entry, config=config))
    (folder / "README.md").write_text("# thing\n")
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    return folder


def _stands_aside(folder: Path, why: str) -> None:
    report = check_folder(folder)
    assert report.problems == []
    assert len(report.notes) == 1, report.notes
    note = report.notes[0]
    assert "class Thing" in note and "cannot be checked statically" in note and why in note
    assert note.endswith("its config keys are checked when the run starts")


# ---- 1a: the entry module is the one Python imports ------------------------------------------------
def test_a_package_wins_over_a_module_of_the_same_name(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"adapter.py": METHOD + "class Thing(Method):\n" + GOOD_INIT,
                                "adapter/__init__.py": METHOD + "class Thing(Method):\n    pass\n"})
    # the real importer (the harness's own) takes the package: checked independently of validate
    assert _resolve_class("adapter:Thing", folder.resolve()).__module__.endswith(".adapter")
    assert sys.modules[_resolve_class("adapter:Thing", folder.resolve()).__module__].__file__.endswith(
        "adapter/__init__.py")
    with pytest.raises(SubmissionError, match=r"key 'alpha' is not a parameter of Thing \(adapter/__init__.py, "
                                              r"line 2; it inherits Method's constructor\)"):
        validate_folder(folder)
    # and the other way round: the package takes alpha, the module does not -> valid
    (folder / "adapter.py").write_text(METHOD + "class Thing(Method):\n    pass\n")
    (folder / "adapter" / "__init__.py").write_text(METHOD + "class Thing(Method):\n" + GOOD_INIT)
    assert check_folder(folder).problems == []


def test_a_compiled_module_wins_over_source_and_is_not_read(tmp_path: Path) -> None:
    ext = importlib.machinery.EXTENSION_SUFFIXES[0]
    folder = _folder(tmp_path, {"adapter.py": METHOD + "class Thing(Method):\n    pass\n", f"adapter{ext}": "x"},
                     config="{ nonsense = 1 }")
    report = check_folder(folder)
    assert report.problems == []
    assert report.notes == [f"[method].entry 'adapter:Thing': class Thing not checked statically: adapter{ext} is "
                            "compiled, not Python source; its config keys are checked when the run starts"]


def test_dotted_entries_namespace_folders_and_skipped_folders(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"pkg/impl.py": METHOD + "class Thing(Method):\n" + GOOD_INIT},
                     entry="pkg.impl:Thing", config="{ alpah = 1 }")
    with pytest.raises(SubmissionError, match=r"'alpah' is not a parameter of Thing.__init__ \(pkg/impl.py, line 3\)"
                                              r", which takes alpha; did you mean 'alpha'"):
        validate_folder(folder)
    # a module the snapshot does not carry (results/ at the top is never copied) is refused
    folder2 = _folder(tmp_path / "b", {"results/__init__.py": "", "results/impl.py": METHOD + "class Thing(Method):"
                                       "\n    pass\n"}, entry="results.impl:Thing", config="{}")
    with pytest.raises(SubmissionError, match="resolves to results/impl.py, which is not part of the submission"):
        validate_folder(folder2)


# ---- 1b: positional-only parameters --------------------------------------------------------------
def test_positional_only_parameters_are_not_config_keys(tmp_path: Path) -> None:
    adapter = METHOD + "class Thing(Method):\n    def __init__(self, alpha=1.0, /, beta=2):\n        pass\n"
    folder = _folder(tmp_path, {"adapter.py": adapter}, config="{ alpha = 2.0 }")
    with pytest.raises(SubmissionError, match="key 'alpha' names a positional-only parameter of Thing.__init__ "
                                              r"\(adapter.py, line 3\) \(before '/'\), which cannot be set by name"):
        validate_folder(folder)
    (folder / "submission.toml").write_text(TOML.format(entry="adapter:Thing", config="{ beta = 3 }"))
    assert check_folder(folder).problems == []
    (folder / "adapter.py").write_text(METHOD + "class Thing(Method):\n    def __init__(self, alpha, /, beta=2):\n"
                                                "        pass\n")
    with pytest.raises(SubmissionError, match=r"positional-only parameter\(s\) without a default \(alpha\), which no "
                                              "config can set"):
        validate_folder(folder)


def test_the_run_names_positional_only_parameters() -> None:
    from personalrewardbench import Method

    class Only(Method):
        def __init__(self, prior_weight: float = 4.0, scale: float = 3.0, /) -> None:
            pass

    with pytest.raises(MethodError) as exc:
        check_config("x", Only, {"scale": 1.0})
    text = str(exc.value)
    assert "it takes no config" not in text
    assert "valid keys: none (positional-only, which a config cannot set by name: prior_weight, scale)" in text


# ---- 1c/d/e: only a plain, sole, top-level class statement is read --------------------------------
PLAIN = "class Thing(Method):\n" + GOOD_INIT


@pytest.mark.parametrize(("source", "why"), [
    (PLAIN + "class _Other(Thing):\n    def __init__(self):\n        pass\nThing = _Other\n",
     "bound more than once at module level (lines 2, 8)"),
    ('"""\nclass Thing\n"""\nif True:\n    class Thing(Method):\n        def __init__(self, beta=1):\n'
     "            pass\n", "not a plain top-level class statement (line 6"),
    ("try:\n    class Thing(Method):\n        pass\nexcept ImportError:\n    pass\n", "not a plain top-level"),
    (PLAIN + PLAIN, "bound more than once"),
    (PLAIN + "from elsewhere import Thing\n", "bound more than once"),
    (PLAIN + "for Thing in [Thing]:\n    pass\n", "bound more than once"),
    (PLAIN + "def f():\n    global Thing\n    Thing = 1\n", "declared global in a function"),
    (PLAIN + "def f():\n    global Thing\nf()\n", "declared global in a function"),
    (PLAIN + "globals()['Thing'] = int\n", "uses globals (line 5)"),
    (PLAIN + "import sys\nsys.modules[__name__].Thing = int\n", "uses .modules (line 6)"),
    (PLAIN + "from elsewhere import *\n", "star import"),
    ("Thing = type('Thing', (Method,), {})\n", "not a plain top-level class statement (line 2"),
    ("def __getattr__(name):\n    return int\n", "has no top-level 'class Thing'"),  # PEP 562 module __getattr__
    (PLAIN + "[(Thing := 1) for _ in range(1)]\n", "bound more than once"),
    # generated or replaced constructors
    ("from dataclasses import dataclass\n@dataclass\nclass Thing(Method):\n    alpha: float = 1.0\n",
     "decorated (line 3: @dataclass)"),
    ("import attrs\n@attrs.define\nclass Thing(Method):\n    alpha: float = 1.0\n", "decorated (line 3: @attrs.define)"),
    ("class Meta(type):\n    pass\nclass Thing(Method, metaclass=Meta):\n    pass\n", "class keywords (metaclass=Meta)"),
    ("from pydantic import BaseModel\nclass Thing(Method, BaseModel):\n    alpha: float = 1.0\n",
     "the base class BaseModel, which is not a plain class"),
    ("from elsewhere import Base\nclass Thing(Base):\n    pass\n", "the base class Base, which is not a plain class"),
    ("class Thing(Method):\n    def __new__(cls, alpha=1.0):\n        return super().__new__(cls)\n",
     "defines __new__"),
    ("import functools\nclass Thing(Method):\n    @functools.lru_cache\n    def __init__(self):\n        pass\n",
     "__init__ is decorated"),
    ("def make(**kw):\n    pass\nclass Thing(Method):\n    __init__ = make\n", "__init__ is not one plain def"),
    ("class Thing(Method):\n    def __init__(self, **kw):\n        pass\n", "takes **kw"),
    ("from dataclasses import dataclass\n@dataclass\nclass Base(Method):\n    alpha: float = 1.0\n"
     "class Thing(Base):\n    pass\n", "inherits from Base: Base is decorated"),
    # the class or its attributes rewritten after the statement, or through the module itself
    (PLAIN + "def _init(self, beta=1):\n    pass\nThing.__init__ = _init\n", "assigns Thing.__init__"),
    (PLAIN + "import inspect\nThing.__signature__ = inspect.Signature()\n", "assigns Thing.__signature__"),
    (PLAIN + "from . import adapter as _me\n_me.Thing = int\n", "imports the module itself"),
    (PLAIN + "import adapter\n", "imports the module itself"),
    (PLAIN + "setattr(Thing, '__init__', lambda self, beta=1: None)\n", "uses setattr"),
    # a base that changes construction, even when the class has its own __init__
    ("class _B(Method):\n    def __new__(cls, *a, **k):\n        return object.__new__(cls)\n"
     "class Thing(_B):\n" + GOOD_INIT, "_B defines __new__"),
    ("class _M(type):\n    pass\n_B = _M('_B', (Method,), {})\nclass Thing(_B):\n" + GOOD_INIT,
     "the base class _B, which is not a plain class"),
    ("from elsewhere import Base\nclass Thing(Base):\n" + GOOD_INIT, "the base class Base, which is not a plain"),
])
def test_what_cannot_be_read_exactly_is_a_note_not_a_verdict(tmp_path: Path, source: str, why: str) -> None:
    # alpha = 2.0 may well be valid (the dataclass takes it) or not (the rebinding's takes nothing):
    # either way validate must neither refuse nor claim to have checked
    _stands_aside(_folder(tmp_path, {"adapter.py": METHOD + source}), why)


@pytest.mark.parametrize("init", ["from . import adapter as _a\n_a.Thing.__init__ = lambda self, beta=1: None\n",
                                  "import os\n"])
def test_code_in_the_package_init_makes_it_a_note(tmp_path: Path, init: str) -> None:
    # the folder is imported as a package: its __init__.py runs before the entry module and may change it
    folder = _folder(tmp_path, {"adapter.py": METHOD + PLAIN, "__init__.py": init}, config="{ beta = 1 }")
    _stands_aside(folder, "__init__.py runs before adapter.py")
    (folder / "__init__.py").write_text('"""Just a docstring."""\npass\n')  # nothing runs: checked as usual
    assert check_folder(folder).problems[0].startswith("[method].config key 'beta' is not a parameter of Thing")


def test_a_class_nothing_can_bind_is_refused(tmp_path: Path) -> None:
    # no binding of the name, no star import, no module __getattr__, nothing dynamic: the import would fail
    folder = _folder(tmp_path, {"adapter.py": METHOD + "class Thng(Method):\n    pass\n"})
    with pytest.raises(SubmissionError, match=r"adapter.py defines no 'Thing' \(did you mean 'Thng'\?\), and nothing "
                                              "in it can create that name"):
        validate_folder(folder)


def test_a_plain_class_is_still_checked(tmp_path: Path) -> None:
    # names bound only inside functions or class bodies are theirs, not the module's
    source = (PLAIN.replace("pass", "Thing = 1\n        self.x = [Thing for Thing in range(2)]")
              + "def helper():\n    Thing = 2\n    return Thing\n")
    folder = _folder(tmp_path, {"adapter.py": METHOD + source}, config="{ beta = 1 }")
    report = check_folder(folder)
    assert report.notes == []
    assert report.problems == ["[method].config key 'beta' is not a parameter of Thing.__init__ (adapter.py, line 3), "
                               "which takes alpha; rename the key or add the parameter"]


# ---- 2: every problem in one run ------------------------------------------------------------------
def test_every_problem_is_reported_in_one_run(tmp_path: Path) -> None:
    folder = tmp_path / "submissions" / "thing"
    folder.mkdir(parents=True)
    (folder / "adapter.py").write_text(METHOD + "class Thing(Method):\n    def __init__(self, prior_weight=4.0):\n"
                                                "        pass\n")
    toml = TOML.format(entry="adapter:Thing", config="{ prior_wieght = 1.0 }").replace(
        'contact = "a@example.org"', 'contact = "ada at example"') + "[requirments]\nllm = false\n"
    (folder / "submission.toml").write_text(toml.replace('name = "thing"', 'name = "other"'))
    with pytest.raises(SubmissionError) as exc:
        validate_folder(folder)
    text = str(exc.value)
    assert "5 problem(s)" in text
    for part in ("unknown table [requirments]", "[submission].contact 'ada at example' must be",
                 "key 'prior_wieght' is not a parameter of Thing.__init__ (adapter.py, line 3), which takes "
                 "prior_weight; did you mean 'prior_weight'?", "README.md is missing",
                 "folder name 'thing' differs from [submission].name 'other'"):
        assert part in text
    # TOML that does not parse: the checks that need nothing from it still run
    (folder / "submission.toml").write_text("[submission\n")
    (folder / "adapter.py").write_text("def broken(:\n")
    with pytest.raises(SubmissionError) as exc:
        validate_folder(folder)
    text = str(exc.value)
    assert "3 problem(s)" in text and "not valid TOML" in text and "README.md is missing" in text
    assert "adapter.py, line 1" in text


def test_a_bad_name_or_entry_skips_only_the_checks_that_need_it(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"adapter.py": METHOD + PLAIN}, config="{ beta = 1 }", entry="adapter:")
    with pytest.raises(SubmissionError) as exc:
        validate_folder(folder)
    assert "1 problem(s)" in str(exc.value) and "must be 'module:Class'" in str(exc.value)
    (folder / "submission.toml").write_text(TOML.format(entry="adapter:Thing", config="1"))
    with pytest.raises(SubmissionError) as exc:  # an unusable config: the module and class are still checked
        validate_folder(folder)
    assert "1 problem(s)" in str(exc.value) and "must be a table" in str(exc.value)


def test_validate_command_prints_notes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from personalrewardbench.cli import main

    folder = _folder(tmp_path, {"adapter.py": METHOD + "from dataclasses import dataclass\n@dataclass\n"
                                              "class Thing(Method):\n    alpha: float = 1.0\n"})
    assert main(["submission", "validate", str(folder)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"ok   {folder}: thing\n  note: [method].entry 'adapter:Thing': class Thing in adapter.py "
                          "cannot be checked statically: Thing is decorated")


# ---- 3: --force never replaces a repository method folder -----------------------------------------
def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=cwd, check=True,
                   capture_output=True)


def test_force_refuses_registered_and_tracked_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    subs = tmp_path / "repo" / "submissions"
    monkeypatch.setenv("PRB_METHOD_DIRS", str(subs))
    registered = write_template("mine", subs)  # registers "mine" once PRB_METHOD_DIRS lists subs
    (registered / "adapter.py").write_text((registered / "adapter.py").read_text() + "# my work\n")
    before = (registered / "adapter.py").read_text()
    with pytest.raises(SubmissionError, match="is the method folder of mine, mine-strong; --force only overwrites"):
        write_template("mine", subs, force=True)
    assert (registered / "adapter.py").read_text() == before
    # tracked by git, though not registered (its submission.toml is broken)
    tracked = subs / "draft"
    tracked.mkdir()
    (tracked / "notes.txt").write_text("keep me\n")
    _git(tmp_path / "repo", "init", "-q")
    _git(tmp_path / "repo", "add", "submissions/draft/notes.txt")
    _git(tmp_path / "repo", "commit", "-q", "-m", "draft")
    with pytest.raises(SubmissionError, match="holds files tracked by git"):
        write_template("draft", subs, force=True)
    assert sorted(p.name for p in tracked.iterdir()) == ["notes.txt"]
    # tracked anywhere in a repository (its docs/), not only under baselines/ or submissions/
    docs = tmp_path / "repo" / "docs"
    docs.mkdir()
    (docs / "README.md").write_text("the project's docs\n")
    _git(tmp_path / "repo", "add", "docs/README.md")
    _git(tmp_path / "repo", "commit", "-q", "-m", "docs")
    with pytest.raises(SubmissionError, match="holds files tracked by git"):
        write_template("docs", tmp_path / "repo", force=True)
    assert (docs / "README.md").read_text() == "the project's docs\n"
    # the harness package itself, and a folder inside it
    import personalrewardbench

    package = Path(personalrewardbench.__file__).resolve().parent
    for name, parent in (("personalrewardbench", package.parent), ("data", package)):
        with pytest.raises(SubmissionError, match="harness package"):
            write_template(name, parent, force=True)
    # a scratch folder of the user's own is still overwritten
    scratch = tmp_path / "scratch" / "idea"
    scratch.mkdir(parents=True)
    (scratch / "old.txt").write_text("x")
    write_template("idea", tmp_path / "scratch", force=True)
    assert (scratch / "adapter.py").is_file()


def test_the_shipped_example_cannot_be_overwritten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from personalrewardbench.cli import main

    repo = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(repo)
    before = (repo / "submissions" / "embed-direction" / "adapter.py").read_bytes()
    assert main(["submission", "new", "embed-direction", "--force"]) != 0
    assert (repo / "submissions" / "embed-direction" / "adapter.py").read_bytes() == before


# ---- 5: a bare name suggests the method folder ----------------------------------------------------
def test_not_found_suggests_the_method_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_template("my-method", tmp_path / "submissions")
    with pytest.raises(SubmissionError, match=r"my-method/submission.toml: not found; did you mean "
                                              r"submissions/my-method\?"):
        read_submission("my-method")
    with pytest.raises(SubmissionError, match=r"did you mean .*baselines/length\?"):
        validate_folder("length")
    with pytest.raises(SubmissionError) as exc:
        read_submission("no-such-thing")
    assert "did you mean" not in str(exc.value)


def test_template_variant_is_a_non_personalized_control(tmp_path: Path, tiny) -> None:
    """The template's variant gives every user the pooled lean: its predictions are one function of the
    two lengths for everyone, so it misses the user who prefers shorter answers, which the base method gets."""
    from personalrewardbench.evaluate import make_queries
    from personalrewardbench.methods import load_method, read_folder_methods
    from tests.submissions.conftest import run_method

    folder = write_template("demo", tmp_path)
    base_info, strong_info = read_folder_methods(folder)
    assert strong_info.name == "demo-strong" and strong_info.config["personalize"] is False
    queries, _ = make_queries(tiny.pairs_of("test"), 0)
    base, strong = run_method(load_method(base_info), tiny), run_method(load_method(strong_info), tiny)
    longer_first = [len(q.first) > len(q.second) for q in queries]
    # pooled lean +0.30 (rate 13/20) for all: the longer answer always; the base method follows each user
    assert [p > 0.5 for p in strong] == longer_first
    assert [p > 0.5 for p in base] == [lf != (q.user_id == "user1") for lf, q in zip(longer_first, queries,
                                                                                     strict=True)]


def test_template_control_with_a_balanced_population_has_no_lean(tmp_path: Path) -> None:
    """Users 0 and 2 prefer longer answers, 1 and 3 shorter (6 train+val pairs each): pooled rate
    (12 + 1) / (24 + 2) = 0.5, so the control's lean is 0 for all and every prediction is 0.5. A huge
    prior_weight is no control: user 0's rate is (6 + 1000 * 0.5) / 1006 > 0.5 and user 1's
    (0 + 500) / 1006 < 0.5, so each user's own choices still set the sign of their lean."""
    from personalrewardbench.methods import load_method, read_folder_methods
    from tests.conftest import make_tiny_benchmark
    from tests.submissions.conftest import run_method

    bench = make_tiny_benchmark(n_users=4)
    folder = write_template("balanced", tmp_path)
    base_info, strong_info = read_folder_methods(folder)
    control = load_method(strong_info)
    assert set(run_method(control, bench)) == {0.5}
    assert control.artifacts() == {f"user{u}": "length lean +0.00" for u in range(4)}
    big_prior = load_method(base_info, {"prior_weight": 1000.0})
    run_method(big_prior, bench)
    assert big_prior.artifacts() == {"user0": "length lean +0.01", "user1": "length lean -0.01",
                                     "user2": "length lean +0.01", "user3": "length lean -0.01"}



def test_a_harness_base_is_trusted_unless_the_module_rewrites_it(tmp_path: Path) -> None:
    source = ("from personalrewardbench.llm_judge import LLMJudgeMethod\n"
              "class Thing(LLMJudgeMethod):\n" + GOOD_INIT)
    folder = _folder(tmp_path, {"adapter.py": source}, config="{ beta = 1 }")
    report = check_folder(folder)
    assert report.notes == [] and report.problems[0].startswith("[method].config key 'beta' is not a parameter of Thing")
    (folder / "adapter.py").write_text(source + "LLMJudgeMethod.__init__ = lambda self, beta=1: None\n")
    _stands_aside(folder, "assigns LLMJudgeMethod.__init__")
    (folder / "adapter.py").write_text("from personalrewardbench.llm_judge import LLMJudgeMethod\n"
                                       "class Thing(LLMJudgeMethod):\n    pass\n")
    _stands_aside(folder, "inherits __init__ from the harness class LLMJudgeMethod")
