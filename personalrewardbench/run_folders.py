"""Finding run folders: walks of results trees that never follow links, never enter a rendered
leaderboard site, and stop at a depth limit; the run folders named on a command line."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

RESULTS_FILE = "results.json"  # as results.RESULTS_FILE (results.py re-exports this module's names: no import here)

MAX_FOLDER_DEPTH = 32  # results/<dataset>/<method>/<run-id> is 3 deep; far deeper trees are not read
SITE_MARKER = ".prb-site"  # the file `prb leaderboard build` writes at the top of every site it renders
SITE_COPY = "run-results.json"  # a site's copy of a run's results.json (never read as a run)


def scan_folders(root: Path | str, max_depth: int = MAX_FOLDER_DEPTH) -> Iterator[tuple[Path, list[str], list[Path], str | None]]:
    """Walk ``root`` top-down in name order without recursion and without entering linked folders.

    Yields ``(folder, entry names, linked sub-folders, problem)``: ``problem`` is set (and the
    other fields empty) for a folder that cannot be listed or lies more than ``max_depth`` below
    ``root``; such folders are not entered. A ``root`` that cannot be listed yields nothing. No
    file a folder holds makes the walk pass it by (a marker that hid folders would hide a tampered
    run from `prb verify`): a rendered site names its copies ``run-results.json`` instead, so they
    are never taken for runs.
    """
    root = Path(root)
    stack: list[tuple[Path, int]] = [(root, 0)]
    while stack:
        here, depth = stack.pop()
        if depth > max_depth:
            yield here, [], [], f"nested more than {max_depth} folders deep; not read"
            continue
        try:
            with os.scandir(here) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            if depth:
                yield here, [], [], f"cannot be listed ({exc.strerror})"
            continue
        links = [here / e.name for e in entries if e.is_symlink() and e.is_dir()]
        yield here, [e.name for e in entries], links, None
        subdirs = [here / e.name for e in entries if not e.is_symlink() and e.is_dir(follow_symlinks=False)]
        stack.extend((d, depth + 1) for d in reversed(subdirs))


def walk_run_dirs(root: Path | str) -> Iterator[Path]:
    """Folders at or below ``root`` that hold a ``results.json`` entry (a file or, to be reported,
    a link), sorted. Symbolically linked folders are never entered; see :func:`scan_folders`."""
    for folder, names, _, problem in scan_folders(root):
        if problem is None and RESULTS_FILE in names:
            yield folder


def unmatched_pattern(path: Path | str) -> str | None:
    """For a path that does not exist and holds a wildcard (``*``, ``?``, ``[``): the shell found no
    match and passed the pattern as it is, so say so; else None."""
    p = str(path)
    if os.path.lexists(p) or not any(c in p for c in "*?["):
        return None
    return (f"no run folder matches {p} (the shell passes a pattern that matches nothing unchanged); check the "
            f"path, e.g. ls {Path(p).parent}")


def find_runs(paths: Sequence[Path | str]) -> list[Path]:
    """Run folders (holding results.json) at or below ``paths``, sorted; linked folders are not entered."""
    from personalrewardbench.results import ResultsError

    out: set[Path] = set()
    for p in map(Path, paths):
        if p.name == RESULTS_FILE and (p.is_file() or p.is_symlink()):
            out.add(p.parent)
        elif (p / RESULTS_FILE).exists() or (p / RESULTS_FILE).is_symlink():
            out.add(p)
        elif p.is_dir():
            out.update(walk_run_dirs(p))
        elif p.exists():
            raise ResultsError(f"{p}: is a file, not a results folder; pass a run folder (holding {RESULTS_FILE}) "
                               "or a folder of runs, e.g. prb-output/results")
        else:
            raise ResultsError(unmatched_pattern(p) or f"{p}: no such results folder; pass a run folder (holding "
                               f"{RESULTS_FILE}) or a folder of runs, e.g. prb-output/results")
    return sorted(out)
