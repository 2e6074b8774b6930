"""The process-tree accounting and the cgroup v2 set-up (on a fake cgroup tree where the machine has none)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from personalrewardbench.submissions.limits import (
    Cgroup2,
    SandboxLimits,
    Watchdog,
    descendants,
    process_memory,
    process_table,
)


def test_descendants_include_double_forked_grandchildren():
    code = "import os, time\nif os.fork() == 0:\n    time.sleep(30)\nelse:\n    time.sleep(30)"
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 10
        while len(descendants(proc.pid, process_table())) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(descendants(proc.pid, process_table())) == 2
    finally:
        proc.kill()
        proc.wait()


def test_watchdog_sums_memory_over_the_tree_and_kills_once():
    # two processes of ~60 MiB each (forked after touching the pages: copy-on-write, so PSS splits them)
    code = ("import os, time\nb = bytearray(60 * 2**20)\nfor i in range(0, len(b), 4096): b[i] = 1\n"
            "if os.fork() == 0:\n    c = bytearray(60 * 2**20)\n    for i in range(0, len(c), 4096): c[i] = 1\n"
            "time.sleep(30)")
    proc = subprocess.Popen([sys.executable, "-c", code])
    kills = []
    wd = Watchdog(proc.pid, SandboxLimits(memory_mb=100), lambda: (kills.append(1), proc.kill()))
    try:
        deadline = time.monotonic() + 15
        while wd.reason is None and time.monotonic() < deadline:
            wd.check_once()
            time.sleep(0.1)
        assert wd.reason == "memory" and kills == [1] and wd.peak_bytes > 100 * 2**20
        wd.check_once()
        assert kills == [1]
    finally:
        proc.kill()
        proc.wait()


def test_process_memory_of_a_missing_process_is_zero():
    assert process_memory(2**22 + 12345) == 0 and process_memory(os.getpid()) > 0


def test_watchdog_deadline():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    wd = Watchdog(proc.pid, SandboxLimits(), proc.kill)
    wd.deadline = time.monotonic() - 1
    wd.check_once()
    assert wd.reason == "timeout"
    proc.wait()


def test_cgroup2_setup_on_a_fake_tree(tmp_path, monkeypatch):
    root = tmp_path / "cg"
    (root / "parent" / "own").mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    monkeypatch.setattr(Cgroup2, "ROOT", root)
    real_open = open

    def fake_open(path, *a, **k):
        if path == "/proc/self/cgroup":
            return real_open(tmp_path / "self-cgroup", *a, **k)
        return real_open(path, *a, **k)

    (tmp_path / "self-cgroup").write_text("0::/parent/own\n")
    monkeypatch.setattr("builtins.open", fake_open)
    orig_mkdir = type(root).mkdir

    def mkdir(self, *a, **k):  # a new cgroup comes with the kernel's files
        orig_mkdir(self, *a, **k)
        for name in ("cgroup.controllers", "memory.max", "memory.swap.max", "pids.max", "memory.oom.group"):
            (self / name).write_text("memory pids\n" if name == "cgroup.controllers" else "max\n")

    monkeypatch.setattr(type(root), "mkdir", mkdir)
    cg = Cgroup2.create(SandboxLimits(memory_mb=300, max_processes=64))
    assert cg is not None and cg.path.parent == root / "parent"
    assert (cg.path / "memory.max").read_text() == str(300 * 2**20)
    assert (cg.path / "memory.swap.max").read_text() == "0" and (cg.path / "pids.max").read_text() == "64"
    assert (cg.path / "memory.oom.group").read_text() == "1"
    assert cg.wrap(["true"])[-1] == "true"
    (root / "cgroup.controllers").unlink()
    assert Cgroup2.create(SandboxLimits()) is None  # cgroup v1 (or none): the watchdog alone


def test_cgroup1_setup_on_a_fake_tree(tmp_path, monkeypatch):
    from personalrewardbench.submissions.limits import Cgroup1

    root = tmp_path / "cg"
    for controller in ("memory", "pids"):
        (root / controller / "parent").mkdir(parents=True)
        (root / controller / "cgroup.procs").write_text("")
    monkeypatch.setattr(Cgroup1, "ROOT", root)
    real_open = open

    def fake_open(path, *a, **k):
        if path == "/proc/self/cgroup":
            return real_open(tmp_path / "self-cgroup", *a, **k)
        return real_open(path, *a, **k)

    (tmp_path / "self-cgroup").write_text("8:pids:/\n4:memory:/parent\n1:cpu,cpuacct:/\n")
    monkeypatch.setattr("builtins.open", fake_open)
    orig_mkdir = type(root).mkdir

    def mkdir(self, *a, **k):  # a new v1 group comes with its controller's files
        orig_mkdir(self, *a, **k)
        names = ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes") if "memory" in self.parts else ("pids.max",)
        for name in (*names, "cgroup.procs"):
            (self / name).write_text("max\n" if name != "cgroup.procs" else "")

    monkeypatch.setattr(type(root), "mkdir", mkdir)
    cg = Cgroup1.create(SandboxLimits(memory_mb=300, max_processes=64))
    assert cg is not None
    assert cg.paths["memory"].parent == root / "memory" / "parent" and cg.paths["pids"].parent == root / "pids"
    assert (cg.paths["memory"] / "memory.limit_in_bytes").read_text() == str(300 * 2**20)
    assert (cg.paths["memory"] / "memory.memsw.limit_in_bytes").read_text() == str(300 * 2**20)
    assert (cg.paths["pids"] / "pids.max").read_text() == "64"
    script = cg.wrap(["true"])
    assert script[-1] == "true" and all(str(p / "cgroup.procs") in script[2] for p in cg.paths.values())
    (cg.paths["memory"] / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    assert cg.oom_killed()
    (root / "cgroup.controllers").write_text("memory pids\n")
    assert Cgroup1.create(SandboxLimits()) is None  # a cgroup v2 machine: Cgroup2's business


def test_stale_empty_sandbox_groups_of_dead_harnesses_are_swept(tmp_path):
    from personalrewardbench.submissions.cgroups import sweep_stale

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f"prb-sandbox-{dead.pid}-aaaa").mkdir()  # left by a harness that was killed
    (tmp_path / f"prb-sandbox-{os.getpid()}-bbbb").mkdir()  # a live harness's
    busy = tmp_path / f"prb-sandbox-{dead.pid}-cccc"
    (busy / "child").mkdir(parents=True)  # not empty: never touched
    (tmp_path / "other").mkdir()
    sweep_stale(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"prb-sandbox-{os.getpid()}-bbbb", busy.name,
                                                                 "other"])
