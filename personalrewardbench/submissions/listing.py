"""Listing a method folder without trusting it: regular files only, no symbolic links followed,
bounded depth and file count (used by validation, snapshots and the syntax check)."""

from __future__ import annotations

import os
from pathlib import Path

SKIPPED_TOP = ("results",)
SKIPPED_ANYWHERE = ("__pycache__", ".git")
MAX_FILES = 20_000
MAX_DEPTH = 32  # folders below the submission folder; code and assets need a handful


def list_folder(folder: str | Path) -> tuple[list[str], list[str]]:
    """The regular files of a method folder (relative POSIX paths, sorted) and its problems.

    Never follows a symbolic link: each one (and anything not a regular file or folder,
    e.g. a FIFO or device) is a problem naming the path. ``results/`` at the top and
    ``__pycache__``/``.git`` anywhere are skipped: they are not part of the method. The walk
    is iterative and stops at :data:`MAX_DEPTH` nested folders (a problem naming the folder),
    so no tree, however deep, exhausts the stack or the path length.
    """
    root = Path(folder)
    files: list[str] = []
    problems: list[str] = []
    if root.is_symlink():
        return [], [f"{root}: the submission folder is a symbolic link; symlinks are never followed"]
    stack: list[tuple[str, int]] = [("", 0)]
    while stack:
        rel, depth = stack.pop()
        if depth > MAX_DEPTH:
            problems.append(f"{root / rel}: nested more than {MAX_DEPTH} folders deep; keep the submission's "
                            "folders shallow (its contents were not read)")
            continue
        try:
            entries = sorted(os.scandir(root / rel) if rel else os.scandir(root), key=lambda e: e.name)
        except OSError as exc:
            problems.append(f"{root / rel}: cannot be listed ({exc.strerror})")
            continue
        for entry in entries:
            sub = f"{rel}/{entry.name}" if rel else entry.name
            if entry.name in SKIPPED_ANYWHERE or (not rel and entry.name in SKIPPED_TOP):
                continue
            if entry.is_symlink():
                problems.append(f"{root / sub}: is a symbolic link; commit the file itself (symlinks are never "
                                "followed)")
            elif entry.is_dir(follow_symlinks=False):
                stack.append((sub, depth + 1))
            elif entry.is_file(follow_symlinks=False):
                files.append(sub)
            else:
                problems.append(f"{root / sub}: is not a regular file or folder; remove it")
        if len(files) > MAX_FILES:
            problems.append(f"{root}: more than {MAX_FILES} files; keep the submission to its code and assets")
            break
    return sorted(files), problems
