"""OS isolation for sandboxed adapters: what can be enforced where, and how.

Modes (chosen by :func:`detect_mode`, recorded in every sandboxed result):

- ``"root"`` (Linux, harness runs as root, ``unshare`` available): the adapter
  runs in new network, mount, PID, IPC and UTS namespaces; its filesystem is a
  fresh tmpfs root holding read-only bind mounts of only the system dirs
  (/usr, /etc, /lib*), the Python installation, the personalrewardbench package
  and the submission folder, plus a private /tmp and /dev; its /proc shows only
  its own processes; it then drops to uid/gid 65534 (nobody) with no
  capabilities and ``no_new_privs``. No network (only a down loopback), no
  benchmark files, results or caches, no view of the harness's memory or
  environment.
- ``"userns"`` (Linux, non-root, unprivileged user namespaces enabled): the
  same namespaces and filesystem view inside a user namespace; the uid is not
  changed (there is no other uid to map), the rest holds.
- ``"process"`` (macOS, or Linux where neither works): a separate process with
  a scrubbed environment, an empty temporary working directory, labels
  withheld, the time limit and, on Linux, the memory limit. The adapter can
  still read files its user can read and open network connections; on Linux
  the harness marks itself non-dumpable so a same-uid adapter cannot read its
  memory or environment through /proc.

Limits in every mode: wall-clock time (enforced by the harness, which kills
the process group), memory through RLIMIT_AS (Linux; macOS does not enforce
it), CPU seconds (RLIMIT_CPU), file size (RLIMIT_FSIZE), no core dumps.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

NOBODY = 65534
SYSTEM_DIRS = ("/usr", "/etc", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin")
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
LIBRARY_MARKERS = ("/site-packages", "/dist-packages", "/lib/python")
NAMESPACE_FLAGS = ["--net", "--mount", "--pid", "--ipc", "--uts", "--fork", "--kill-child"]

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
MNT_DETACH = 2
PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 4, 38
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "ppc64le": 203, "s390x": 217}

ENFORCED = {
    "root": ["separate process", "labels withheld", "scrubbed environment", "empty working directory",
             "time limit", "memory limit (RLIMIT_AS)", "no network (network namespace)",
             "private filesystem (only system dirs, Python, the package and the submission folder)",
             "private PID namespace and /proc", "unprivileged uid 65534, no_new_privs"],
    "userns": ["separate process", "labels withheld", "scrubbed environment", "empty working directory",
               "time limit", "memory limit (RLIMIT_AS)", "no network (network namespace)",
               "private filesystem (only system dirs, Python, the package and the submission folder)",
               "private PID namespace and /proc", "no_new_privs"],
    "process": ["separate process", "labels withheld", "scrubbed environment", "empty working directory",
                "time limit"] + (["memory limit (RLIMIT_AS)", "harness memory/environ unreadable (non-dumpable)"]
                                 if sys.platform.startswith("linux") else []),
}


def unshare_command(mode: str) -> list[str]:
    """The prefix that starts the worker in its namespaces ([] for ``process`` mode)."""
    if mode == "root":
        return ["unshare", *NAMESPACE_FLAGS]
    if mode == "userns":
        return ["unshare", "--user", "--map-root-user", *NAMESPACE_FLAGS]
    return []


@lru_cache(maxsize=1)
def detect_mode() -> str:
    """The strongest isolation this machine allows: ``root``, ``userns`` or ``process``."""
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None:
        return "process"
    import tempfile

    mode = "root" if os.geteuid() == 0 else "userns"
    # the probe goes through the same steps as a real start (namespaces, private root, uid drop)
    code = ("import sys; from personalrewardbench import sandbox_isolation as iso; "
            "iso.enter_private_root(sys.argv[1], iso.plan_binds(sys.argv[2]), 16, drop_uid=sys.argv[3] == 'root'); "
            "import personalrewardbench.sandbox_worker")
    with tempfile.TemporaryDirectory(prefix="prb-sandbox-probe-") as tmp:
        os.makedirs(os.path.join(tmp, "root"))
        os.makedirs(os.path.join(tmp, "empty"))
        try:
            probe = subprocess.run([*unshare_command(mode), sys.executable, "-I", "-B", "-c", code,
                                    os.path.join(tmp, "root"), os.path.join(tmp, "empty"), mode],
                                   capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return "process"
    return mode if probe.returncode == 0 else "process"


def _covered(path: str, chosen: Iterable[str]) -> bool:
    return any(path == c or path.startswith(c.rstrip("/") + "/") for c in chosen)


def plan_binds(submission_folder: Path, extra: Iterable[Path] = ()) -> list[str]:
    """Absolute host paths to bind read-only into the sandbox, outermost first.

    The Python installation (base prefix and venv), library dirs on ``sys.path``
    (site-packages; never a script folder, the cwd or a checkout root, which
    could hold benchmark files or results), the package directory, the
    submission folder and ``extra``.
    """
    import personalrewardbench

    pkg_dir = str(Path(personalrewardbench.__file__).resolve().parent)
    wanted = [os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, sys.exec_prefix)]
    wanted.append(str(Path(os.path.realpath(sys.executable)).parent.parent))
    for entry in sys.path:
        real = os.path.realpath(entry) if entry else ""
        # library dirs only: a script's folder, the cwd or a source checkout on sys.path could hold
        # benchmark files or results (the package itself is bound below)
        if real and os.path.isdir(real) and any(m in real for m in LIBRARY_MARKERS):
            wanted.append(real)
    wanted += [pkg_dir, str(Path(submission_folder).resolve())]
    wanted += [os.path.realpath(p) for p in extra]
    chosen: list[str] = []
    for path in sorted(set(wanted), key=lambda p: (p.count("/"), p)):
        if path in ("/", "") or not os.path.exists(path) or _covered(path, SYSTEM_DIRS) or _covered(path, chosen):
            continue
        chosen.append(path)
    return chosen


# ---- applied inside the worker (Linux namespaces only) --------------------------------------------

def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(libc: ctypes.CDLL, src: str, dst: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(libc.mount(src.encode(), dst.encode(), fstype.encode() if fstype else None, ctypes.c_ulong(flags),
                      data.encode() if data else None), f"mount {src} on {dst}")


def _bind_readonly(libc: ctypes.CDLL, src: str, dst: str) -> None:
    _mount(libc, src, dst, None, MS_BIND | MS_REC)
    st = os.statvfs(src)
    keep = 0
    for st_flag, ms_flag in ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
                             (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME),
                             (getattr(os, "ST_RELATIME", 4096), MS_RELATIME)):
        if st.f_flag & st_flag:
            keep |= ms_flag
    _mount(libc, "none", dst, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | keep)


def _make_target(root: str, path: str, is_dir: bool) -> str:
    target = root + path
    if is_dir:
        os.makedirs(target, mode=0o755, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        open(target, "a").close()
    return target


def enter_private_root(root: str, binds: list[str], tmp_mb: int, drop_uid: bool, gpu: bool = False) -> None:
    """Build a tmpfs root with read-only binds, pivot into it, mount /proc, /tmp, /dev; drop to nobody.

    Must run as (namespace) root inside fresh mount and PID namespaces.
    """
    libc = _libc()
    _mount(libc, "none", "/", None, MS_REC | MS_PRIVATE)
    _mount(libc, "tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=755")
    for d in SYSTEM_DIRS:
        if os.path.islink(d):
            os.symlink(os.readlink(d), root + d)
        elif os.path.isdir(d):
            _bind_readonly(libc, d, _make_target(root, d, True))
    tmp = _make_target(root, "/tmp", True)
    _mount(libc, "tmpfs", tmp, "tmpfs", MS_NOSUID | MS_NODEV, f"size={tmp_mb}m,mode=1777")
    for path in binds:
        _bind_readonly(libc, path, _make_target(root, path, os.path.isdir(path)))
    dev = _make_target(root, "/dev", True)
    _mount(libc, "tmpfs", dev, "tmpfs", MS_NOSUID, "size=64k,mode=755")
    names = list(DEVICES) + ([n for n in os.listdir("/dev") if n.startswith("nvidia")] if gpu else [])
    for name in names:
        if os.path.exists("/dev/" + name):
            _mount(libc, "/dev/" + name, _make_target(root, "/dev/" + name, False), None, MS_BIND)
    shm = _make_target(root, "/dev/shm", True)
    _mount(libc, "tmpfs", shm, "tmpfs", MS_NOSUID | MS_NODEV, f"size={tmp_mb}m,mode=1777")
    for link, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{dev}/{link}")
    _mount(libc, "proc", _make_target(root, "/proc", True), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.chdir(root)
    nr = SYS_PIVOT_ROOT.get(os.uname().machine)
    if nr is None:
        raise OSError(f"pivot_root: unknown syscall number on {os.uname().machine}")
    _check(libc.syscall(nr, b".", b"."), "pivot_root")
    _check(libc.umount2(b".", MNT_DETACH), "detach old root")
    os.chdir("/")
    _mount(libc, "none", "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    if drop_uid:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(no_new_privs)")


def set_dumpable(flag: bool) -> None:
    """Mark this (harness) process (non-)dumpable: when not, same-uid processes cannot read its /proc memory."""
    if sys.platform.startswith("linux"):
        try:
            _libc().prctl(PR_SET_DUMPABLE, 1 if flag else 0, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - exotic libc
            pass
