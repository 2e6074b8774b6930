"""Resource limits for a sandboxed adapter, and the watchdog that enforces them on its whole process tree.

Limits hold for all the adapter's processes together, not per process:

- memory: the proportional set size (PSS, so pages shared between forks count once) summed
  over every process of the sandbox, plus what it has written to its private /tmp and
  /dev/shm, plus the capacity of the kernel buffers behind its pipes and sockets
  (:func:`kernel_buffers`). Where the harness can create a cgroup v2 with the memory
  controller, that cgroup enforces the same limit in the kernel (tmpfs pages are charged to
  it too); the watchdog runs in any case. On a cgroup v1 machine the harness uses the v1
  ``memory`` and ``pids`` controllers instead where it may (e.g. as root). Elsewhere the
  watchdog enforces the limits alone; the other ways of making the kernel hold memory outside
  every process map (anonymous memory files, System V IPC, keyrings, io_uring, grown pipe or
  socket buffers, IP and Unix datagram sockets) are refused inside the sandbox by its seccomp
  filter (:mod:`~personalrewardbench.submissions.syscall_filter`).
- temporary space: /tmp and /dev/shm are tmpfs mounts of ``tmp_mb`` each (bubblewrap's
  ``--size``), and their use counts against the memory limit.
- processes: at most ``max_processes`` at once: the kernel refuses forks beyond it (RLIMIT_NPROC,
  counted per user namespace since Linux 5.14, set in the sandbox before the adapter runs; a
  cgroup's pids.max where there is one); the watchdog stops a sandbox it finds over it.
- wall clock: one deadline for the whole run, from process start to the last answer,
  including the time the harness spends answering the adapter's LLM requests.

On any breach the watchdog kills the sandbox (the whole PID namespace goes with it) and
records why, so the harness reports ``memory``, ``processes`` or ``timeout``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from personalrewardbench.submissions.cgroups import Cgroup1, Cgroup2

__all__ = ["Cgroup1", "Cgroup2", "SandboxLimits", "Watchdog", "descendants", "kernel_buffers", "process_memory",
           "process_table", "tmpfs_used"]

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MiB = 1024 * 1024


@dataclass(frozen=True)
class SandboxLimits:
    """Limits and isolation for one sandboxed adapter.

    ``time_s``: wall-clock seconds for the whole run (start-up, fit, every predict chunk,
    artifacts, and the time the harness spends answering the adapter's LLM requests);
    ``start_s``: the start-up alone (process start, constructing the adapter);
    ``memory_mb``: MiB summed over all the adapter's processes and its temporary files;
    ``tmp_mb``: size of each of its private /tmp and /dev/shm; ``fsize_mb``: largest file
    it may write (its log included); ``max_processes``: processes at once (the kernel's
    RLIMIT_NPROC inside the sandbox and a cgroup's pids.max count threads too);
    ``max_files``: open files per process (RLIMIT_NOFILE);
    ``message_mb``: largest single message it may send the harness;
    ``llm_slice``: most prompts the harness runs as one LLM batch (slices shrink near the deadline: see
    :mod:`~personalrewardbench.submissions.llm_service`);
    ``isolation``: ``"bwrap"`` (bubblewrap; the default and the only isolating mode) or
    ``"none"``, which runs the adapter as a plain child process and is refused unless
    ``trust_code`` is set; ``extra_read_only``: host paths bound read-only (e.g. a model folder).
    """

    time_s: float = 3600.0
    start_s: float = 120.0
    memory_mb: int = 8192
    tmp_mb: int = 1024
    fsize_mb: int = 1024
    max_processes: int = 256
    max_files: int = 1024
    message_mb: int = 64
    llm_slice: int = 512
    isolation: str = "bwrap"
    trust_code: bool = False
    extra_read_only: tuple[str, ...] = field(default=())


def worker_limits(limits: SandboxLimits, mode: str) -> dict[str, int | None]:
    """The per-process limits the worker sets on itself before loading the adapter (its ``start`` message).

    ``processes`` (RLIMIT_NPROC) only in bubblewrap mode, where the kernel counts the sandbox user's tasks in
    its own user namespace: that count includes bubblewrap's init (pid 1 there) but not bubblewrap itself,
    which the watchdog counts, so one less keeps both on the same total. Elsewhere it would count every
    process of the harness's user.
    """
    return {"memory_mb": limits.memory_mb, "fsize_mb": limits.fsize_mb,
            "cpu_s": int(limits.time_s * max(1, os.cpu_count() or 1)) + 60,
            "processes": max(1, limits.max_processes - 1) if mode == "bwrap" else None,
            "files": limits.max_files}


def enforcement_notes(mode: str, cgroup: str | None, notes: list[str]) -> list[str]:
    """What the results should say about how memory and processes were limited: ``cgroup`` describes the
    sandbox's cgroup (None: none holds it); ``notes``: those already made (how bubblewrap was started)."""
    out = [f"memory: {cgroup} and the process-tree watchdog" if cgroup is not None
           else "memory: process-tree watchdog only (PSS summed over all processes, plus /tmp and /dev/shm use and "
                "pipe and socket buffers; the system calls that hold memory outside every process map are refused "
                "by the seccomp filter: no cgroup here)"]
    if mode == "bwrap" and os.geteuid() == 0 and not any("as uid 65534" in n for n in notes):
        # the kernel never applies RLIMIT_NPROC to the processes of host root
        out.append("processes: RLIMIT_NPROC does not bind a sandbox user that is root on the host; "
                   + ("cgroup pids.max and " if cgroup is not None else "") + "the watchdog hold the limit")
    return out


def process_table() -> dict[int, int]:
    """pid -> parent pid for every process visible in /proc (processes that vanish mid-scan are skipped)."""
    table: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # fields after the command name (which may itself hold spaces and parentheses)
        rest = stat[stat.rfind(b")") + 2:].split()
        if len(rest) > 1:
            table[int(name)] = int(rest[1])
    return table


def descendants(root: int, table: dict[int, int]) -> list[int]:
    """``root`` and every process below it in ``table`` (pid -> ppid)."""
    children: dict[int, list[int]] = {}
    for pid, ppid in table.items():
        children.setdefault(ppid, []).append(pid)
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        if pid in table or pid == root:
            out.append(pid)
        stack.extend(children.get(pid, ()))
    return out


def process_memory(pid: int) -> int:
    """Bytes of memory one process holds: PSS + swapped PSS from smaps_rollup, else resident set size."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            total = 0
            for line in fh:
                if line.startswith((b"Pss:", b"SwapPss:")):
                    total += int(line.split()[1]) * 1024
            return total
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return 0


def tmpfs_used(pids: Iterable[int], mounts: Iterable[str]) -> int:
    """Bytes used on the sandbox's private tmpfs ``mounts`` (seen through the first pid whose root is readable;
    a process still on the harness's own file systems, e.g. bubblewrap before it has set up the sandbox's
    mounts, is skipped: its /tmp is the host's)."""
    own = {}
    for m in mounts:
        try:
            own[m] = os.stat(m).st_dev
        except OSError:
            own[m] = None
    for pid in pids:
        used, ok = 0, False
        for m in mounts:
            try:
                if os.stat(f"/proc/{pid}/root{m}").st_dev == own[m]:
                    continue
                st = os.statvfs(f"/proc/{pid}/root{m}")
            except OSError:
                continue
            ok = True
            used += (st.f_blocks - st.f_bfree) * st.f_frsize
        if ok:
            return used
    return 0


def socket_bytes() -> int:
    """What one socket can make the kernel hold: its send buffer at the system default (``net.core.wmem_default``;
    the sandbox may not grow it) plus one more buffer's worth of slack for the last message queued."""
    try:
        with open("/proc/sys/net/core/wmem_default", "rb") as fh:
            default = int(fh.read())
    except (OSError, ValueError):
        default = 0
    return max(default, 212992) + 65536


PIPE_BYTES = 16 * PAGE  # a pipe's default capacity (16 pages); the sandbox may not grow it (F_SETPIPE_SZ)
SOCKET_BYTES = socket_bytes()


def _netns(pid: int | str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def kernel_buffers(pids: Iterable[int], netns: bool = False) -> int:
    """Bytes the kernel may hold in the pipes and sockets of ``pids``: each distinct pipe at :data:`PIPE_BYTES`
    and each socket at :data:`SOCKET_BYTES` (capacity, not current use: these buffers are in no process map).

    With ``netns`` (the sandbox has its own network namespace) the Unix and netlink sockets no process holds
    (connections not yet accepted, sockets in flight in a message) are counted too, from the namespace's own
    tables (``/proc/<pid>/net/unix``, ``.../netlink``). Pipes in flight are not seen (at most RLIMIT_NOFILE).
    """
    pipes: set[str] = set()
    sockets: set[str] = set()
    table_pid = None
    own = _netns("self") if netns else None
    for pid in pids:
        try:
            names = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for name in names:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{name}")
            except OSError:
                continue
            if target.startswith("pipe:"):
                pipes.add(target)
            elif target.startswith("socket:["):
                sockets.add(target[8:-1])
        if netns and table_pid is None and _netns(pid) not in (None, own):
            table_pid = pid
    if table_pid is not None:
        for table, column in (("unix", 6), ("netlink", 9)):
            try:
                with open(f"/proc/{table_pid}/net/{table}", "rb") as fh:
                    next(fh, None)  # header
                    for n, line in enumerate(fh):
                        fields = line.split()
                        if len(fields) > column:  # a connection not yet accepted has no inode yet (0)
                            sockets.add(fields[column].decode() if fields[column] != b"0" else f"{table}-{n}")
            except OSError:
                continue
    return len(pipes) * PIPE_BYTES + len(sockets) * SOCKET_BYTES


class Watchdog(threading.Thread):
    """Polls the process tree under ``root_pid``; on a breach calls ``kill()`` once and sets ``reason``.

    ``deadline``: a monotonic time (read at every poll, so the owner may move it);
    ``tmp_mounts``: sandbox paths of its private tmpfs mounts (counted into memory);
    ``oom_check``: whether the kernel has killed one of its processes at the cgroup's memory
    limit (a cgroup v1 kills one process, not the group: the watchdog then stops the rest).
    """

    def __init__(self, root_pid: int, limits: SandboxLimits, kill: Callable[[], None], *,
                 tmp_mounts: tuple[str, ...] = (), interval: float = 0.2,
                 oom_check: Callable[[], bool] | None = None) -> None:
        super().__init__(name=f"prb-sandbox-watchdog-{root_pid}", daemon=True)
        self.root_pid = root_pid
        self.limits = limits
        self.deadline = float("inf")
        self.reason: str | None = None
        self.detail = ""
        self.peak_bytes = 0
        self.peak_processes = 0
        self._kill = kill
        self._tmp_mounts = tmp_mounts
        self._interval = interval
        self._oom_check = oom_check
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def check_once(self) -> None:
        """One poll (also called directly by tests)."""
        pids = descendants(self.root_pid, process_table())
        if time.monotonic() > self.deadline:
            self._breach("timeout", "the wall-clock limit passed")
            return
        n = len(pids)
        self.peak_processes = max(self.peak_processes, n)
        if n > self.limits.max_processes:
            self._breach("processes", f"{n} processes (limit {self.limits.max_processes})")
            return
        mem = sum(process_memory(p) for p in pids) + kernel_buffers(pids, netns=bool(self._tmp_mounts))
        if self._tmp_mounts:
            mem += tmpfs_used([p for p in pids if p != self.root_pid], self._tmp_mounts)
        self.peak_bytes = max(self.peak_bytes, mem)
        if self._oom_check is not None and self._oom_check():
            self._breach("memory", f"the kernel's cgroup limit was reached; {mem / MiB:.0f} MiB left over {n} "
                                   "process(es) and temporary files")
        elif mem > self.limits.memory_mb * MiB:
            self._breach("memory", f"{mem / MiB:.0f} MiB over {n} process(es) and temporary files")

    def _breach(self, reason: str, detail: str) -> None:
        if self.reason is None:
            self.reason, self.detail = reason, detail
            self._kill()

    def run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.check_once()
            except Exception:  # noqa: BLE001 - a failed poll is retried; the harness's own checks remain
                continue
            if self.reason is not None:
                return
