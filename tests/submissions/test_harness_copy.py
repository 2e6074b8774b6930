"""The sandbox imports exactly the harness copy that is running, however it was found (an install, an
editable install, or a clone on PYTHONPATH), although the worker runs with ``python -I``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import personalrewardbench
from personalrewardbench.submissions import isolation as iso

PACKAGE = Path(personalrewardbench.__file__).resolve().parent

ADAPTER = '''import personalrewardbench
from personalrewardbench import Method


class Where(Method):
    name = "where"

    def fit(self, histories):
        self.users = sorted({h.user_id for h in histories})

    def predict(self, queries):
        return [0.75 for _ in queries]

    def artifacts(self):
        return {u: personalrewardbench.__file__ for u in self.users}
'''
TOML = '''[submission]
name = "where"
authors = ["A"]
contact = "a@example.org"
description = "Reports which personalrewardbench it imported."
license = "MIT"
[method]
entry = "adapter:Where"
'''


def test_module_command_puts_the_running_package_first(tmp_path: Path) -> None:
    cmd = iso.harness_module_command("personalrewardbench.submissions.worker", "3", "4")
    assert cmd[:4] == [sys.executable, "-I", "-B", "-c"]
    assert cmd[5:] == [str(PACKAGE.parent), "personalrewardbench.submissions.worker", "3", "4"]
    # the bootstrap itself, under -I (which ignores PYTHONPATH), runs a module found only in its root,
    # as __main__ with the arguments after it
    (tmp_path / "probe_mod.py").write_text("import sys\nif __name__ == '__main__':\n    print(__file__, sys.argv[1:])\n")
    out = subprocess.run([*cmd[:5], str(tmp_path), "probe_mod", "a", "b"], capture_output=True, text=True,
                         env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": "/nonexistent"}, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"{tmp_path / 'probe_mod.py'} ['a', 'b']\n"


def test_scoring_from_a_clone_on_pythonpath_uses_that_clone(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    shutil.copytree(PACKAGE, clone / "personalrewardbench", ignore=shutil.ignore_patterns("__pycache__"))
    folder = tmp_path / "where"
    folder.mkdir()
    (folder / "submission.toml").write_text(TOML)
    (folder / "README.md").write_text("# where\n")
    (folder / "adapter.py").write_text(ADAPTER)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PRB_METHOD_DIRS")}
    env["PYTHONPATH"] = str(clone)
    run = subprocess.run([sys.executable, "-c", "import sys; from personalrewardbench.cli import main; "
                          "sys.exit(main())", "submission", "score", str(folder), "--dataset", "synthetic",
                          "--users", "2", "--bootstrap", "0", "--out", str(tmp_path / "out"), "--quiet"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    [artifacts] = (tmp_path / "out").glob("*/where/*/artifacts.json")
    seen = set(json.loads(artifacts.read_text()).values())
    assert seen == {str(clone / "personalrewardbench" / "__init__.py")}
