"""The method registry: folders, variants, module:Class, entry points, errors."""

from __future__ import annotations

import sys

import pytest

from personalrewardbench.methods import METHOD_DIRS_ENV, Method, MethodError, list_methods, load_method
from tests.eval.helpers import write_method_folder


def test_repository_baselines_are_registered():
    found = list_methods()
    for name in ("random", "position", "length"):
        assert found[name] == f"baselines/{name}"
    m = load_method("length")
    assert isinstance(m, Method) and m.name == "length" and m.method_info.tier == "reproduced"
    assert m.get_config() == {"unit": "chars"}


def test_folders_with_same_module_names_and_relative_imports(tmp_path, monkeypatch):
    base = tmp_path / "submissions"
    write_method_folder(base / "alpha", "alpha")
    write_method_folder(base / "beta", "beta", variants='[variants.half]\nconfig = { p = 0.5 }\n')
    monkeypatch.setenv(METHOD_DIRS_ENV, str(base))
    assert set(list_methods()) == {"alpha", "beta", "beta-half"}
    a, b, half = load_method("alpha"), load_method("beta"), load_method("beta-half")
    assert (a.tag, b.tag) == ("alpha", "beta")  # each folder's own constants.py
    assert type(a) is not type(b) and type(a).__module__ != type(b).__module__
    assert half.name == "beta-half" and half.p == 0.5 and b.p == 1.0
    assert half.method_info.tier == "submitted"
    assert load_method("beta-half", {"p": 0.25}).p == 0.25  # explicit config wins
    by_path = load_method(str(base / "alpha"))
    assert by_path.name == "alpha"


def test_unknown_name_suggests_close_names(tmp_path, monkeypatch):
    with pytest.raises(MethodError, match=r"unknown method 'lenght'.*did you mean: length"):
        load_method("lenght")
    monkeypatch.setenv(METHOD_DIRS_ENV, str(tmp_path))
    with pytest.raises(MethodError, match="known methods"):
        load_method("nothing-like-it")


def test_module_class_spec(tmp_path, monkeypatch):
    (tmp_path / "my_methods_mod.py").write_text(
        "from personalrewardbench.methods import Method\n"
        "class Half(Method):\n    name = 'half'\n    def predict(self, qs):\n        return [0.5] * len(qs)\n"
        "class NotAMethod:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    m = load_method("my_methods_mod:Half")
    assert m.name == "half" and m.method_info.source == "my_methods_mod:Half"
    with pytest.raises(MethodError, match="not a subclass"):
        load_method("my_methods_mod:NotAMethod")
    with pytest.raises(MethodError, match="no class 'Missing'"):
        load_method("my_methods_mod:Missing")
    with pytest.raises(MethodError, match="not found"):
        load_method("no_such_module_xyz:Thing")
    sys.modules.pop("my_methods_mod", None)


def test_entry_point_group(tmp_path, monkeypatch):
    (tmp_path / "ep_methods_mod.py").write_text(
        "from personalrewardbench.methods import Method\n"
        "class Third(Method):\n    name = 'third'\n    def predict(self, qs):\n        return [1.0] * len(qs)\n")
    dist = tmp_path / "ep_methods-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-methods\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[personalrewardbench.methods]\nthird-party = ep_methods_mod:Third\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert list_methods()["third-party"] == "entry-point:ep_methods_mod:Third"
    m = load_method("third-party")
    assert m.name == "third-party" and m.predict([None]) == [1.0]
    sys.modules.pop("ep_methods_mod", None)


def test_bad_config_and_bad_folders(tmp_path, monkeypatch):
    with pytest.raises(MethodError, match="unknown config key .no_such_arg.; valid keys: unit"):
        load_method("length", {"no_such_arg": 1})
    with pytest.raises(MethodError, match="unit"):
        load_method("length", {"unit": "bytes"})
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MethodError, match="no submission.toml"):
        load_method(str(empty))
    broken = write_method_folder(tmp_path / "subs" / "broken", "broken")
    (broken / "submission.toml").write_text("[submission\nname=")
    monkeypatch.setenv(METHOD_DIRS_ENV, str(tmp_path / "subs"))
    assert "broken" not in list_methods()
    with pytest.raises(MethodError, match="not valid TOML"):
        load_method("broken")
    missing = write_method_folder(tmp_path / "missing", "missing", cls="Gone",
                                  body="from personalrewardbench.methods import Method\n")
    with pytest.raises(MethodError, match="no class 'Gone'"):
        load_method(str(missing))
