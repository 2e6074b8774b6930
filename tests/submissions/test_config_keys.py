"""`prb submission validate` checks config keys against the entry class's __init__ without running code."""

from __future__ import annotations

from pathlib import Path

import pytest

from personalrewardbench.submissions.spec import SubmissionError, validate_folder
from personalrewardbench.submissions.template import write_template

TOML = '''[submission]
name = "{name}"
authors = ["A"]
contact = "a@example.org"
description = "d"
license = "MIT"

[method]
entry = "adapter:Thing"
config = {config}

[variants.v]
config = {variant}
'''


def _folder(tmp_path: Path, adapter: str, config: str = "{ alpha = 1.0 }", variant: str = "{ beta = 2 }") -> Path:
    folder = tmp_path / "thing"
    folder.mkdir()
    (folder / "submission.toml").write_text(TOML.format(name="thing", config=config, variant=variant))
    (folder / "README.md").write_text("# thing\n")
    (folder / "adapter.py").write_text(adapter)
    return folder


HEAD = "from personalrewardbench import Method\nimport sys\nsys.exit('the adapter code must not run')\n"


def test_keys_match_the_init_parameters(tmp_path: Path) -> None:
    folder = _folder(tmp_path, HEAD + "class Thing(Method):\n    def __init__(self, alpha: float = 1.0, *, beta=0):\n"
                                      "        pass\n    def predict(self, q):\n        return []\n")
    assert validate_folder(folder).method_names() == ["thing", "thing-v"]


def test_an_unknown_key_is_named_with_the_fix(tmp_path: Path) -> None:
    folder = _folder(tmp_path, HEAD + "class Thing(Method):\n    def __init__(self, alpha=1.0):\n        pass\n",
                     config="{ alpah = 1.0 }", variant="{ gamma = 3 }")
    with pytest.raises(SubmissionError) as exc:
        validate_folder(folder)
    text = str(exc.value)
    assert ("[method].config key 'alpah' is not a parameter of Thing.__init__ (adapter.py, line 5), which takes "
            "alpha; did you mean 'alpha'? rename the key or add the parameter") in text
    assert "[variants.v].config key 'gamma' is not a parameter" in text


def test_a_required_parameter_must_be_set(tmp_path: Path) -> None:
    folder = _folder(tmp_path, HEAD + "class Thing(Method):\n    def __init__(self, alpha, beta=1):\n        pass\n",
                     config="{ beta = 1 }", variant="{ beta = 2 }")
    with pytest.raises(SubmissionError, match=r"Thing.__init__ \(adapter.py, line 5\) requires alpha \(no default\)"):
        validate_folder(folder)


def test_kwargs_a_local_base_and_an_external_base(tmp_path: Path) -> None:
    # **kwargs: any key
    folder = _folder(tmp_path, HEAD + "class Thing(Method):\n    def __init__(self, **cfg):\n        pass\n",
                     config="{ anything = 1 }", variant="{ else = 2 }")
    validate_folder(folder)
    # __init__ inherited from a base class in the same module: its parameters count
    toml = (folder / "submission.toml").read_text()
    (folder / "submission.toml").write_text(toml.replace("anything = 1", "alpha = 1.0").replace("else = 2", "beta = 2"))
    (folder / "adapter.py").write_text(HEAD + "class Base(Method):\n    def __init__(self, alpha=1.0, beta=2):\n"
                                              "        pass\nclass Thing(Base):\n    pass\n")
    validate_folder(folder)
    (folder / "adapter.py").write_text(HEAD + "class Base(Method):\n    def __init__(self, alpha=1.0):\n"
                                              "        pass\nclass Thing(Base):\n    pass\n")
    with pytest.raises(SubmissionError, match="key 'beta' is not a parameter of Thing.__init__"):
        validate_folder(folder)
    # a class with no __init__ deriving from Method takes no config
    (folder / "adapter.py").write_text(HEAD + "class Thing(Method):\n    pass\n")
    with pytest.raises(SubmissionError, match="which takes no arguments"):
        validate_folder(folder)
    # a base class from elsewhere: its parameters cannot be read statically, so the keys are not judged
    (folder / "adapter.py").write_text(HEAD + "from somewhere import Other\nclass Thing(Other):\n    pass\n")
    validate_folder(folder)


def test_new_refuses_a_taken_name_before_writing(tmp_path: Path) -> None:
    with pytest.raises(SubmissionError, match="already taken by baselines/length; pick another name"):
        write_template("length", tmp_path / "deep" / "subs")
    assert not (tmp_path / "deep").exists()
    with pytest.raises(SubmissionError, match="'default-judge-strong'|already taken"):
        write_template("default-judge", tmp_path / "subs")
    assert not (tmp_path / "subs").exists()
    folder = write_template("fresh-name", tmp_path / "subs")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "adapter.py", "submission.toml"]
    assert "--dataset synthetic" in (folder / "README.md").read_text()
