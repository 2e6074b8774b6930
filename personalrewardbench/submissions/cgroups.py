"""Kernel-enforced limits for one sandbox: a cgroup (v2, or v1's ``memory`` and ``pids`` controllers).

Where the harness may create one, the sandbox's processes run inside a cgroup whose memory
limit covers everything the kernel charges to them, including what no process map shows
(anonymous memory files, System V shared memory, tmpfs pages), and whose process limit makes
forks past ``max_processes`` fail. :mod:`personalrewardbench.submissions.limits`' watchdog
runs in any case. ``create`` never raises: None means "no kernel limits here".
"""

from __future__ import annotations

import os
import shlex
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from personalrewardbench.submissions.limits import SandboxLimits

MiB = 1024 * 1024


def _pid_joined(pid: int, wait_s: float, matches: Callable[[str], bool]) -> bool:
    """Whether a line of ``/proc/PID/cgroup`` (stripped) ``matches``, polling every 10 ms for up to
    ``wait_s`` seconds; False once the process is gone."""
    end = time.monotonic() + wait_s
    while True:
        try:
            with open(f"/proc/{pid}/cgroup") as fh:
                if any(matches(line.strip()) for line in fh):
                    return True
        except OSError:
            return False
        if time.monotonic() >= end:
            return False
        time.sleep(0.01)


def sweep_stale(parent: Path) -> None:
    """Remove the empty ``prb-sandbox-<pid>-*`` groups under ``parent`` whose harness process is gone (left by
    a harness killed before it could remove them; a group that still holds processes is never touched)."""
    try:
        entries = list(parent.glob("prb-sandbox-*"))
    except OSError:
        return
    for group in entries:
        pid = group.name.split("-")[2]
        if not pid.isdigit() or os.path.exists(f"/proc/{pid}"):
            continue
        try:
            group.rmdir()  # fails (and is left alone) unless empty
        except OSError:
            pass


class Cgroup2:
    """A cgroup v2 with memory/pids limits for one sandbox, where this machine lets the harness make one.

    :meth:`create` returns None (never raises) on cgroup v1, without delegation, or when the
    memory controller is unavailable; the watchdog then enforces the limits alone.
    """

    ROOT = Path("/sys/fs/cgroup")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.describe = "cgroup v2 memory.max"

    @classmethod
    def create(cls, limits: SandboxLimits) -> Cgroup2 | None:
        if not (cls.ROOT / "cgroup.controllers").is_file():
            return None
        try:
            own = next(line.split(":", 2)[2].strip() for line in open("/proc/self/cgroup") if line.startswith("0::"))
        except (OSError, StopIteration):
            return None
        parent = (cls.ROOT / own.lstrip("/")).parent if own not in ("", "/") else cls.ROOT
        sweep_stale(parent)
        path = parent / f"prb-sandbox-{os.getpid()}-{os.urandom(4).hex()}"
        try:
            path.mkdir()
        except OSError:
            return None
        cg = cls(path)
        try:
            if "memory" not in (path / "cgroup.controllers").read_text().split():
                raise OSError("no memory controller")
            (path / "memory.max").write_text(str(limits.memory_mb * MiB))
            if (path / "memory.swap.max").exists():
                (path / "memory.swap.max").write_text("0")
            if (path / "pids.max").exists():
                (path / "pids.max").write_text(str(limits.max_processes))
            if (path / "memory.oom.group").exists():  # an OOM kill takes the whole sandbox, not one process
                (path / "memory.oom.group").write_text("1")
        except OSError:
            cg.remove()
            return None
        return cg

    def wrap(self, cmd: list[str]) -> list[str]:
        """``cmd`` started inside this cgroup (the shell moves itself in, then execs ``cmd``)."""
        return ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" 2>/dev/null; exec "$@"', str(self.path), *cmd]

    def holds(self, pid: int, wait_s: float = 0.0) -> bool:
        """Whether ``pid`` has moved into this cgroup (waiting up to ``wait_s`` for it to do so)."""
        return _pid_joined(pid, wait_s, lambda line: line.endswith("/" + self.path.name))

    def oom_killed(self) -> bool:
        try:
            for line in (self.path / "memory.events").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value) > 0:
                    return True
        except (OSError, ValueError):
            pass
        return False

    def kill(self) -> None:
        try:
            (self.path / "cgroup.kill").write_text("1")
        except OSError:
            pass

    def remove(self) -> None:
        """Delete the cgroup once its processes are gone (killing any that are left: call it at the end only)."""
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                self.kill()
                time.sleep(0.05)


class Cgroup1:
    """The cgroup v1 ``memory`` and ``pids`` controllers for one sandbox, where this machine has no cgroup v2
    but lets the harness make v1 groups (root on a v1 host or container).

    The kernel then enforces the same limits as :class:`Cgroup2`: memory the watchdog cannot see (anonymous
    memory files, System V segments, tmpfs pages) is charged to the group and over the limit the group's
    largest process is killed; forks past ``max_processes`` fail. :meth:`create` returns None (never raises)
    where the memory controller is missing or the harness may not write it; the watchdog runs in any case.
    """

    ROOT = Path("/sys/fs/cgroup")

    def __init__(self, paths: dict[str, Path]) -> None:
        self.paths = paths  # controller -> this sandbox's group
        self.describe = "cgroup v1 memory.limit_in_bytes"

    @classmethod
    def create(cls, limits: SandboxLimits) -> Cgroup1 | None:
        if (cls.ROOT / "cgroup.controllers").is_file() or not (cls.ROOT / "memory" / "cgroup.procs").is_file():
            return None
        own: dict[str, str] = {}
        try:
            for line in open("/proc/self/cgroup"):
                _, controllers, path = line.rstrip("\n").split(":", 2)
                for c in controllers.split(","):
                    own[c] = path
        except (OSError, ValueError):
            return None
        name = f"prb-sandbox-{os.getpid()}-{os.urandom(4).hex()}"
        cg = cls({})
        try:
            for controller in ("memory", "pids"):
                base = cls.ROOT / controller
                if controller in own and (base / "cgroup.procs").is_file():
                    sweep_stale(base / own[controller].lstrip("/"))
                    path = base / own[controller].lstrip("/") / name
                    path.mkdir()
                    cg.paths[controller] = path
            memory = cg.paths["memory"]  # KeyError: no memory group, no kernel limit
            (memory / "memory.limit_in_bytes").write_text(str(limits.memory_mb * MiB))
            if (memory / "memory.memsw.limit_in_bytes").exists():  # with swap accounting: swap counts too
                (memory / "memory.memsw.limit_in_bytes").write_text(str(limits.memory_mb * MiB))
            if "pids" in cg.paths:
                (cg.paths["pids"] / "pids.max").write_text(str(limits.max_processes))
        except (OSError, KeyError):
            cg.remove()
            return None
        return cg

    def wrap(self, cmd: list[str]) -> list[str]:
        """``cmd`` started inside these groups (the shell moves itself in, then execs ``cmd``)."""
        joins = "; ".join(f"echo $$ > {shlex.quote(str(p / 'cgroup.procs'))} 2>/dev/null" for p in self.paths.values())
        return ["/bin/sh", "-c", f'{joins}; exec "$@"', "sh", *cmd]

    def holds(self, pid: int, wait_s: float = 0.0) -> bool:
        """Whether ``pid`` has moved into the memory group (waiting up to ``wait_s`` for it to do so)."""
        name = self.paths["memory"].name
        return _pid_joined(pid, wait_s, lambda line: ":memory:" in line and line.endswith("/" + name))

    def oom_killed(self) -> bool:
        try:
            for line in (self.paths["memory"] / "memory.oom_control").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value) > 0:
                    return True
        except (OSError, ValueError, KeyError):
            pass
        return False

    def kill(self) -> None:
        """SIGKILL every process in the groups (v1 has no cgroup.kill)."""
        for path in self.paths.values():
            try:
                pids = [int(p) for p in (path / "cgroup.procs").read_text().split()]
            except (OSError, ValueError):
                continue
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass

    def remove(self) -> None:
        """Delete the groups once their processes are gone (killing any that are left: call it at the end only)."""
        for path in list(self.paths.values()):
            for _ in range(50):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    self.kill()
                    time.sleep(0.05)
