"""CPU thread selection: affinity, cgroup quotas (v1 and v2), --threads, and what results record."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from personalrewardbench import threads


def _cgroup_v2(tmp_path: Path, path: str, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        f = root / rel / "cpu.max"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    proc = tmp_path / "proc-cgroup"
    proc.write_text(f"0::{path}\n")
    return root, proc


def test_cgroup_v2_quota_in_the_process_group_or_a_parent(tmp_path: Path) -> None:
    root, proc = _cgroup_v2(tmp_path, "/user.slice/job", {"user.slice/job": "max 100000",
                                                         "user.slice": "150000 100000", "": "max 100000"})
    assert threads.cgroup_cpu_limit(root, proc) == pytest.approx(1.5)  # 150000 / 100000, set on the parent
    affinity = len(os.sched_getaffinity(0))
    assert threads.available_cpus(root, proc) == min(affinity, 2)  # ceil(1.5)
    root, proc = _cgroup_v2(tmp_path / "b", "/", {"": "max 100000"})
    assert threads.cgroup_cpu_limit(root, proc) is None
    assert threads.available_cpus(root, proc) == affinity


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    folder = root / "cpu,cpuacct" / "docker" / "abc"
    folder.mkdir(parents=True)
    (folder / "cpu.cfs_quota_us").write_text("50000\n")
    (folder / "cpu.cfs_period_us").write_text("100000\n")
    (root / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("-1\n")  # no quota at the top
    (root / "cpu,cpuacct" / "cpu.cfs_period_us").write_text("100000\n")
    proc = tmp_path / "proc-cgroup"
    proc.write_text("5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n")
    assert threads.cgroup_cpu_limit(root, proc) == pytest.approx(0.5)
    assert threads.available_cpus(root, proc) == 1  # a half-CPU quota still gets one thread


def test_missing_cgroup_files_mean_no_quota(tmp_path: Path) -> None:
    assert threads.cgroup_cpu_limit(tmp_path / "none", tmp_path / "no-proc-file") is None


def test_user_set_variables_are_kept(monkeypatch) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    threads.prepare_environment(1)
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE" and os.environ["OMP_NUM_THREADS"] == "3"
    assert os.environ["MKL_NUM_THREADS"] == "1"


def test_explicit_threads_reach_torch_and_the_results(tmp_path: Path, monkeypatch, capsys) -> None:
    from personalrewardbench.cli import main
    from personalrewardbench.data.store import save_benchmark
    from personalrewardbench.data.synthetic import sample_benchmark

    for var in (*threads.THREAD_VARS, "OMP_WAIT_POLICY"):
        monkeypatch.delenv(var, raising=False)
    save_benchmark(sample_benchmark(n_users=2, n_train=(3, 3), n_val=1, n_test=2), tmp_path / "bench")
    before = torch.get_num_threads()
    try:
        assert main(["evaluate", "--method", "length", "--dataset", str(tmp_path / "bench"), "--out",
                     str(tmp_path / "results"), "--threads", "1", "--quiet", "--bootstrap", "20"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    (res_file,) = (tmp_path / "results").rglob("results.json")
    recorded = json.loads(res_file.read_text())["provenance"]["threads"]
    assert recorded["threads"] == 1 and recorded["source"] == "--threads" and recorded["torch_threads"] == 1
    assert recorded["omp_wait_policy"] == "PASSIVE"
    assert recorded["available_cpus"] == threads.available_cpus()
    assert os.environ["OMP_NUM_THREADS"] == "1"
