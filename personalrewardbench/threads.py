"""CPU threads for torch, OpenMP, BLAS and tokenizers: how many, and how idle threads wait.

``prb`` calls :func:`prepare_environment` first thing (before torch is imported) and
:func:`configure_threads` once the command line is parsed. Two things matter on a
shared machine:

- **How many threads.** The CPUs this process may actually use: the affinity mask
  (``os.sched_getaffinity``, which taskset, cpusets and container runtimes narrow) and
  the cgroup CPU quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``),
  not ``os.cpu_count()``. ``--threads N`` overrides it.
- **How idle threads wait.** torch's CPU wheels run intra-op work on GNU OpenMP, whose
  idle threads spin by default (``OMP_WAIT_POLICY`` unset: about 300,000 spins before
  sleeping) when there are no more threads than CPUs. With another CPU-bound process on
  the same cores, each parallel region then waits for a descheduled sibling while the
  waiting threads burn the CPU it needs: a small model's thousands of short parallel
  regions per forward pass turn into a convoy (measured: one ``prb evaluate`` 4-8x
  slower next to one busy loop, half of the main thread's samples in libgomp; see
  ``scripts/bench/bench_main_job.py``). ``OMP_WAIT_POLICY=PASSIVE`` makes idle
  threads sleep at once, which removes the convoy for a few percent on a quiet machine.

Variables the user already set are left alone (so ``OMP_WAIT_POLICY=ACTIVE prb ...``
still works). What was chosen is returned as a dict that results record under
``provenance.threads``.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
CGROUP_ROOT = Path("/sys/fs/cgroup")

_chosen: dict[str, Any] = {}


def _cgroup_paths(proc_cgroup: Path) -> dict[str, str]:
    """controller -> cgroup path from ``/proc/self/cgroup`` ('' is the v2 unified hierarchy)."""
    out: dict[str, str] = {}
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3:
            for ctrl in parts[1].split(","):
                out[ctrl] = parts[2]
    return out


def _candidates(base: Path, rel: str) -> list[Path]:
    """The cgroup folder and each of its parents up to ``base`` (a quota anywhere above applies)."""
    rel = rel.strip("/")
    folders = [base / rel] if rel else []
    parts = rel.split("/") if rel else []
    while parts:
        parts.pop()
        folders.append(base.joinpath(*parts) if parts else base)
    return folders or [base]


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """CPUs allowed by the cgroup CPU quota (e.g. 1.5), or None when there is no quota.

    Reads cgroup v2 ``cpu.max`` ("QUOTA PERIOD" or "max PERIOD") and cgroup v1
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (-1: no quota) in the process's cgroup
    and every parent; the smallest quota wins. Files that cannot be read are skipped.
    """
    paths = _cgroup_paths(proc_cgroup)
    limits: list[float] = []
    if "" in paths:  # v2
        for folder in _candidates(root, paths[""]):
            try:
                quota, period = (folder / "cpu.max").read_text().split()[:2]
            except (OSError, ValueError):
                continue
            if quota != "max" and float(period) > 0:
                limits.append(float(quota) / float(period))
    if "cpu" in paths:  # v1
        for mount in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
            for folder in _candidates(root / mount, paths["cpu"]):
                try:
                    quota = float((folder / "cpu.cfs_quota_us").read_text())
                    period = float((folder / "cpu.cfs_period_us").read_text())
                except (OSError, ValueError):
                    continue
                if quota > 0 and period > 0:
                    limits.append(quota / period)
    return min(limits) if limits else None


def available_cpus(root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")) -> int:
    """CPUs this process may use: the affinity mask, capped by the cgroup quota (rounded up, at least 1)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS has no affinity API
        n = os.cpu_count() or 1
    quota = cgroup_cpu_limit(root, proc_cgroup)
    if quota is not None:
        n = min(n, max(1, math.ceil(quota - 1e-9)))
    return max(1, n)


def prepare_environment(threads: int | None = None) -> None:
    """Set thread-related environment defaults; call before torch (or any OpenMP library) loads.

    Sets, unless already set: ``OMP_WAIT_POLICY=PASSIVE``, ``OMP_NUM_THREADS`` /
    ``MKL_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` to ``threads`` (default: :func:`available_cpus`),
    and ``TOKENIZERS_PARALLELISM=false`` (the Rust tokenizers' own thread pool would otherwise
    compete with torch's).
    """
    n = threads or available_cpus()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    for var in THREAD_VARS:
        os.environ.setdefault(var, str(n))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def configure_threads(threads: int | None = None) -> dict[str, Any]:
    """Apply the thread count to torch (if loaded now or later through the env) and return what was chosen.

    ``threads``: an explicit count (``--threads``); None picks :func:`available_cpus`, or
    ``OMP_NUM_THREADS`` when the user set it. Raises ValueError for a count below 1.
    Returns ``{"threads", "available_cpus", "source", "omp_wait_policy", "affinity_cpus",
    "cgroup_cpu_limit"}`` (recorded in results as ``provenance.threads``).
    """
    if threads is not None and threads < 1:
        raise ValueError(f"--threads {threads}: need at least 1")
    avail = available_cpus()
    env_n = os.environ.get("OMP_NUM_THREADS", "")
    if threads is not None:
        n, source = threads, "--threads"
    elif env_n.isdigit() and int(env_n) > 0 and env_n != str(avail):
        n, source = int(env_n), "OMP_NUM_THREADS"
    else:
        n, source = avail, "available CPUs"
    prepare_environment(n)
    if threads is not None:  # an explicit count wins over inherited variables
        for var in THREAD_VARS:
            os.environ[var] = str(n)
    if "torch" in sys.modules:
        import torch

        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    _chosen.clear()
    _chosen.update(threads=n, source=source, available_cpus=avail, affinity_cpus=affinity,
                   cgroup_cpu_limit=cgroup_cpu_limit(), omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"))
    return dict(_chosen)


def current_settings() -> dict[str, Any] | None:
    """What :func:`configure_threads` chose in this process (None if it was not called),
    with torch's live thread count when torch is loaded."""
    if not _chosen:
        return None
    out = dict(_chosen)
    if "torch" in sys.modules:
        import torch

        out["torch_threads"] = torch.get_num_threads()
    return out
