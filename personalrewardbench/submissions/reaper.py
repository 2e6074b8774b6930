"""Parent of an unisolated adapter (``--isolation none``): nothing it starts outlives the run.

``python -m personalrewardbench.submissions.reaper CMD...`` marks itself a child subreaper
(so orphaned and double-forked descendants are re-parented to it rather than to init,
whatever session or process group they moved to), dies with its parent, starts CMD, and
when CMD exits, or on SIGTERM/SIGINT/SIGHUP, kills every descendant and exits. (With
bubblewrap the PID namespace does the same job.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option})")


def _children_of(root: int) -> list[int]:
    from personalrewardbench.submissions.limits import descendants, process_table

    return [p for p in descendants(root, process_table()) if p != root]


def sweep(root: int) -> None:
    """SIGKILL every descendant of ``root`` until none is left (zombies reaped)."""
    for _ in range(200):
        pids = _children_of(root)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        while True:  # reap whatever has died (our direct children and re-parented orphans)
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
        time.sleep(0.01)


def main(argv: list[str] | None = None) -> int:
    """``[--fds R,W] -- CMD...``: run CMD (passing fds R and W on) and sweep its descendants."""
    argv = sys.argv[1:] if argv is None else argv
    fds: tuple[int, ...] = ()
    if argv[:1] == ["--fds"]:
        fds, argv = tuple(int(fd) for fd in argv[1].split(",") if fd), argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    me = os.getpid()
    stop = {"now": False}

    def on_signal(signum: int, frame: object) -> None:
        stop["now"] = True

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    if os.getppid() == 1:  # the harness died before the death signal was armed
        return 1
    proc = subprocess.Popen(argv, pass_fds=fds)
    for fd in fds:
        os.close(fd)
    code: int | None = None
    try:
        while not stop["now"]:
            code = proc.poll()
            if code is not None:
                break
            time.sleep(0.05)
    finally:
        sweep(me)
    if code is not None and code < 0:  # report the worker's signal as our own
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        signal.signal(-code, signal.SIG_DFL)
        os.kill(me, -code)
    return 1 if code is None else code


if __name__ == "__main__":
    sys.exit(main())
