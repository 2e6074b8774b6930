"""Run a command as an unprivileged user (uid/gid 65534) from a root test process.

When this process is not root the command runs as it is. As root it is started through
``setpriv`` with no capabilities; where the Python installation or the repository sits under
a folder other users cannot enter (e.g. Python under /root), the command runs in a private
mount namespace in which each such folder is replaced by a world-traversable tmpfs holding
only the entries needed (bind mounts of the originals), so nothing else becomes readable.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

from personalrewardbench.submissions.isolation import others_can_read

NOBODY = 65534


def _blocked_all(path: str) -> list[tuple[str, str]]:
    """Each ancestor others cannot enter, with the next component below it (outermost first)."""
    p = Path(os.path.realpath(path))
    return [(str(parent), p.relative_to(parent).parts[0]) for parent in reversed(p.parents)
            if parent != Path("/") and not os.stat(parent).st_mode & 0o001]


def unprivileged_command(argv: list[str], needed: list[str], scratch: str = "/tmp") -> tuple[list[str] | None, str]:
    """(``argv`` wrapped to run as uid 65534, "") or (None, why that is impossible here).

    ``needed``: paths the command must read (Python, the repository, ...); ``scratch``: a folder
    for the (empty, afterwards) mount points it may need; the caller removes it.
    """
    if os.geteuid() != 0:
        return argv, ""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None, "setpriv (util-linux) is not installed"
    drop = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "--"]
    exposes: dict[str, set[str]] = {}
    for path in needed:
        hits = _blocked_all(path)
        if len(hits) > 1:
            return None, f"{path} lies under several folders other users cannot enter"
        for folder, child in hits:
            exposes.setdefault(folder, set()).add(child)
    if not exposes:
        return drop + argv, ""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None, "unshare (util-linux) is not installed"
    keep = os.path.join(scratch, "prb-unpriv-keep-" + os.urandom(6).hex())
    lines = ["set -e", "mount --make-rprivate /", f"mkdir -p {keep}"]
    k = 0
    for folder, children in sorted(exposes.items()):
        saved = []
        for child in sorted(children):
            src = os.path.join(folder, child)
            lines += [f"mkdir -p {keep}/{k}", f"mount --bind {shlex.quote(src)} {keep}/{k}"]
            saved.append((child, f"{keep}/{k}"))
            k += 1
        lines.append(f"mount -t tmpfs -o mode=755 tmpfs {shlex.quote(folder)}")
        for child, held in saved:
            lines += [f"mkdir -p {shlex.quote(os.path.join(folder, child))}",
                      f"mount --bind {held} {shlex.quote(os.path.join(folder, child))}"]
    lines.append('exec "$@"')
    return [unshare, "--mount", "--propagation", "private", "sh", "-c", "\n".join(lines), "sh", *drop, *argv], ""


def python_paths() -> list[str]:
    """What a Python process of this environment must be able to read."""
    import personalrewardbench

    paths = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, sys.executable)}
    paths.add(str(Path(personalrewardbench.__file__).resolve().parent.parent))
    return sorted(paths)


def readable_by_others(paths: list[str]) -> bool:
    return all(others_can_read(p) for p in paths)
