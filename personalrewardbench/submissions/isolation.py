"""How the adapter process is isolated: a bubblewrap command line, or (only when asked) nothing.

``bwrap`` mode (the default, and the only isolating one) starts the worker under
bubblewrap (Debian/Ubuntu package ``bubblewrap``, the sandbox Flatpak uses), which works
the same for root and non-root users:

- new user, PID, network, IPC, UTS and cgroup namespaces (``--unshare-all``); creating
  further user namespaces is disabled (``--disable-userns``), so the adapter cannot
  re-enter a namespace where it would hold capabilities;
- no capabilities at all (``--cap-drop ALL``), ``no_new_privs`` (bubblewrap always sets it),
  a new session (no terminal injection), killed with its parent (``--die-with-parent``);
- a seccomp filter (``--seccomp``, :mod:`~personalrewardbench.submissions.syscall_filter`)
  refusing the system calls that make the kernel hold memory outside the sandbox's
  processes (anonymous memory files, System V IPC, keyrings, io_uring, larger pipe and
  socket buffers, IP and Unix datagram sockets);
- a fresh root with read-only binds of only the system dirs, the Python installation,
  the installed ``personalrewardbench`` package and the submission's snapshot
  (``/submission``); a private /proc, a minimal /dev, and size-capped tmpfs mounts on
  /tmp and /dev/shm; nothing the harness writes (results, run files, logs, caches) is
  visible;
- when the harness runs as root, bubblewrap itself is started as uid/gid 65534 (nobody)
  through ``setpriv``, so even the host sees an unprivileged user, provided every path to
  bind is readable by other users; where it is not (e.g. Python installed under /root),
  the sandbox user maps to root on the host, still with no capabilities, and the results
  say so in ``method_usage.sandbox.notes``. Only selected files of /etc are bound
  (:data:`ETC_ENTRIES`), never e.g. /etc/shadow.

``none`` mode runs the worker as a plain child process (separate session, scrubbed
environment, the same limits enforced by the watchdog, every descendant swept at the
end by :mod:`personalrewardbench.submissions.reaper`) and is refused unless the caller
passes ``--i-trust-this-code``. There is no silent fallback from one mode to the other.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from collections.abc import Iterable
from pathlib import Path

NOBODY = 65534
SNAPSHOT_MOUNT = "/submission"
TMP_MOUNTS = ("/tmp", "/dev/shm")
SYSTEM_DIRS = ("/usr",)
# only what programs need from /etc (loader cache, users/groups, time zone, certificates,
# the alternatives links that /usr/bin points into); never the whole of it
ETC_ENTRIES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "passwd", "group",
               "nsswitch.conf", "hosts", "host.conf", "ssl", "ca-certificates", "pki", "alternatives",
               "mime.types", "os-release")
SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
LIBRARY_MARKERS = ("/site-packages", "/dist-packages", "/lib/python")
MODES = ("bwrap", "none")

ENFORCED = {
    "bwrap": ["separate process", "labels withheld", "scrubbed environment",
              "read-only snapshot of the submission; results, run files and logs not visible",
              "private filesystem (system dirs, Python, the package and the snapshot, read-only)",
              "no network (own network namespace)", "own PID namespace; nothing outlives the run",
              "no capabilities, no_new_privs, no new user namespaces",
              "seccomp filter: no memory held outside its processes (memfd, System V IPC, keyrings, io_uring, "
              "grown pipe/socket buffers, IP and Unix datagram sockets)",
              "memory limit over all its processes and temporary files", "size-capped /tmp and /dev/shm",
              "process-count limit (kernel RLIMIT_NPROC in its user namespace, cgroup pids.max where available)",
              "wall-clock limit including LLM service time"],
    "none": ["separate process", "labels withheld", "scrubbed environment",
             "memory limit over all its processes", "process-count limit",
             "wall-clock limit including LLM service time", "every descendant killed at the end",
             "NOT isolated: it can read and write what the harness's user can (--i-trust-this-code)"],
}


SECCOMP_HINT = ("if it came from one of these calls, the sandbox refuses them: memfd_create, System V shared memory, "
                "message queues and semaphores, POSIX message queues, keyrings, io_uring, userfaultfd, bpf, "
                "perf_event_open, growing a pipe (F_SETPIPE_SZ) or a socket buffer (SO_SNDBUF/SO_RCVBUF), IP and Unix "
                "datagram sockets; use ordinary memory, files under /tmp, pipes or Unix stream sockets")


class IsolationUnavailable(RuntimeError):
    """This machine cannot isolate adapters as asked; the message says why and how to fix it."""


REFUSAL_FIX = ("install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap) on a Linux machine that allows "
               "unprivileged user namespaces (on Ubuntu 24.04: sysctl kernel.apparmor_restrict_unprivileged_userns=0), "
               "or, only for code you trust, pass --isolation none --i-trust-this-code")


def bwrap_path() -> str:
    """The bubblewrap executable, or IsolationUnavailable saying how to get it."""
    if not sys.platform.startswith("linux"):
        raise IsolationUnavailable(f"sandboxing needs Linux namespaces; this is {sys.platform}. Fix: run on Linux, "
                                   "or, only for code you trust, pass --isolation none --i-trust-this-code")
    path = shutil.which("bwrap")
    if path is None:
        raise IsolationUnavailable(f"bubblewrap (bwrap) is not installed. Fix: {REFUSAL_FIX}")
    return path


def _covered(path: str, chosen: Iterable[str]) -> bool:
    return any(path == c or path.startswith(c.rstrip("/") + "/") for c in chosen)


def python_binds(extra: Iterable[str | Path] = ()) -> list[str]:
    """Host paths to bind read-only so the worker can run: the Python installation (base prefix
    and venv), library dirs on ``sys.path`` (never a script folder, the cwd or a checkout root,
    which could hold benchmark files or results), the package directory and ``extra``."""
    import personalrewardbench

    pkg_dir = str(Path(personalrewardbench.__file__).resolve().parent)
    wanted = [os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, sys.exec_prefix)]
    wanted.append(str(Path(os.path.realpath(sys.executable)).parent.parent))
    for entry in sys.path:
        real = os.path.realpath(entry) if entry else ""
        if real and os.path.isdir(real) and any(m in real for m in LIBRARY_MARKERS):
            wanted.append(real)
    wanted.append(pkg_dir)
    wanted += [os.path.realpath(p) for p in extra]
    chosen: list[str] = []
    for path in sorted(set(wanted), key=lambda p: (p.count("/"), p)):
        if path in ("/", "") or not os.path.exists(path) or _covered(path, (*SYSTEM_DIRS, *SYSTEM_LINKS, "/etc")) \
                or _covered(path, chosen):
            continue
        chosen.append(path)
    return chosen


# run a module of the harness with -I (no PYTHONPATH, no user site, no script folder on sys.path), first
# putting the folder that holds the running personalrewardbench package at the front of sys.path
BOOTSTRAP = ("import runpy, sys; root = sys.argv.pop(1); module = sys.argv.pop(1); "
             "root in sys.path or sys.path.insert(0, root); runpy.run_module(module, run_name='__main__', alter_sys=True)")


def harness_root() -> str:
    """The folder holding the running ``personalrewardbench`` package (a site-packages folder, or a
    checkout when the harness was found through an editable install or ``PYTHONPATH``)."""
    import personalrewardbench

    return str(Path(personalrewardbench.__file__).resolve().parent.parent)


def harness_module_command(module: str, *args: str) -> list[str]:
    """``python -I -B -c BOOTSTRAP ROOT MODULE ARGS...``: run ``module`` (like ``python -m``) with the
    harness copy that is running now, wherever it was found, even under ``-I``, which ignores
    ``PYTHONPATH``. In the sandbox ROOT shows only what :func:`python_binds` binds under it (the package
    folder, and the Python installation when it lies there), so nothing else becomes importable."""
    return [sys.executable, "-I", "-B", "-c", BOOTSTRAP, harness_root(), module, *args]


def others_can_read(path: str | Path) -> bool:
    """True when a user with no special rights (uid 65534) can reach and read ``path`` (mode bits only)."""
    p = Path(os.path.abspath(path))
    try:
        for parent in reversed(p.parents):
            if not os.stat(parent).st_mode & 0o001:
                return False
        mode = os.stat(p).st_mode
    except OSError:
        return False
    return bool(mode & 0o004) and (not stat.S_ISDIR(mode) or bool(mode & 0o001))


def bwrap_command(snapshot: Path, *, tmp_mb: int, extra_read_only: Iterable[str | Path] = (),
                  gpu: bool = False, notes: list[str] | None = None, seccomp_fd: int | None = None) -> list[str]:
    """The command prefix that runs a program in the sandbox (append the program and its arguments).

    ``snapshot`` (a host folder, read-only inside as ``/submission``); ``notes`` collects what
    the results should say about how it ran; ``seccomp_fd``: a file descriptor holding the
    compiled seccomp program (:func:`~personalrewardbench.submissions.syscall_filter.filter_fd`),
    which the caller must pass to the child. Raises IsolationUnavailable when bubblewrap is missing.
    """
    binds = python_binds(extra_read_only)
    etc = [f"/etc/{e}" for e in ETC_ENTRIES if os.path.lexists(f"/etc/{e}")]
    cmd: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        unreadable = [b for b in [*binds, str(snapshot)] if not others_can_read(b)]
        if setpriv is not None and not unreadable:  # run the sandbox itself as nobody: unprivileged on the host too
            cmd += [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--inh-caps=-all",
                    "--bounding-set=-all", "--"]
            if notes is not None:
                notes.append("bubblewrap started as uid 65534 on the host")
        elif notes is not None:
            why = f"{unreadable[0]} is not readable by other users" if unreadable else "setpriv is missing"
            notes.append(f"sandbox user maps to root on the host, with no capabilities ({why})")
    cmd += [bwrap_path(), "--unshare-all", "--unshare-user", "--disable-userns", "--cap-drop", "ALL",
            "--new-session", "--die-with-parent", "--uid", str(NOBODY), "--gid", str(NOBODY),
            "--hostname", "sandbox"]
    if seccomp_fd is not None:
        cmd += ["--seccomp", str(seccomp_fd)]
    for d in SYSTEM_DIRS:
        if os.path.isdir(d):
            cmd += ["--ro-bind", d, d]
    for d in SYSTEM_LINKS:
        if os.path.islink(d):
            cmd += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            cmd += ["--ro-bind", d, d]
    for path in etc:
        cmd += ["--symlink", os.readlink(path), path] if os.path.islink(path) else ["--ro-bind", path, path]
    # /proc/sys read-only: its files belong to the namespaces' owner, which for a root harness is the sandbox user
    cmd += ["--ro-bind", str(snapshot), SNAPSHOT_MOUNT, "--proc", "/proc", "--ro-bind", "/proc/sys", "/proc/sys",
            "--dev", "/dev"]
    if gpu:
        for name in sorted(os.listdir("/dev")):
            if name.startswith("nvidia"):
                cmd += ["--dev-bind", f"/dev/{name}", f"/dev/{name}"]
        cmd += ["--ro-bind-try", "/sys", "/sys"]
    for mount in TMP_MOUNTS:
        cmd += ["--perms", "1777", "--size", str(int(tmp_mb) * 1024 * 1024), "--tmpfs", mount]
    for path in binds:  # after the tmpfs mounts, so that a harness or model under /tmp stays visible
        cmd += ["--ro-bind", path, path]
    cmd += ["--remount-ro", "/", "--chdir", "/tmp", "--"]
    return cmd


def check_mode(mode: str, trust_code: bool) -> None:
    """Refuse ``none`` without ``trust_code`` and any unknown mode (IsolationUnavailable)."""
    if mode not in MODES:
        raise IsolationUnavailable(f"unknown isolation mode {mode!r}; use one of {', '.join(MODES)}")
    if mode == "none" and not trust_code:
        raise IsolationUnavailable("--isolation none runs the adapter with no isolation at all (it can read and "
                                   "write everything your user can); add --i-trust-this-code to confirm, only for "
                                   "code you trust")


def scrubbed_env(home: str) -> dict[str, str]:
    """The only environment the adapter gets: a fixed PATH and locale, offline Hugging Face settings,
    ``home`` as HOME/TMPDIR, and the harness's thread-count settings; nothing else (no keys, no paths)."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8",
           "LC_ALL": "C.UTF-8", "HF_HOME": f"{home}/hf", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONDONTWRITEBYTECODE": "1"}
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env
