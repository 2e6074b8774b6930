"""A submission folder nested absurdly deep is refused with a message naming the folder, never walked into a
recursion error or a path too long to open, before anything is copied for the sandbox."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from personalrewardbench.cli import main
from personalrewardbench.submissions.listing import MAX_DEPTH, list_folder
from personalrewardbench.submissions.snapshot import Snapshot
from personalrewardbench.submissions.spec import SubmissionError, validate_folder


def _chain(top: Path, depth: int) -> None:
    """top/d/d/.../d/asset.txt, ``depth`` folders deep, created through directory descriptors (no long paths)."""
    fd = os.open(top, os.O_RDONLY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        nxt = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nxt
    os.close(os.open("asset.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    os.close(fd)


def _remove_chain(top: Path) -> None:
    """Delete top/d/d/... without recursion or long paths: lift the chain one level at a time."""
    spare = top.with_name(top.name + ".next")
    while (top / "d").is_dir():
        os.rename(top / "d", spare)
        for name in os.listdir(top):
            os.unlink(top / name)
        os.rmdir(top)
        os.rename(spare, top)
    for name in os.listdir(top):
        os.unlink(top / name)
    os.rmdir(top)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1500])
def test_a_deep_folder_is_refused_with_its_path(tmp_path: Path, monkeypatch, depth: int) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["submission", "new", "deep-one"]) == 0
    folder = tmp_path / "submissions" / "deep-one"
    (folder / "assets").mkdir()
    _chain(folder / "assets", depth)
    try:
        files, problems = list_folder(folder)
        assert any(f"nested more than {MAX_DEPTH} folders deep" in p for p in problems)
        assert "adapter.py" in files  # the rest of the folder is still listed
        with pytest.raises(SubmissionError, match="nested more than"):
            Snapshot(folder)
        with pytest.raises(SubmissionError, match="nested more than"):
            validate_folder(folder)
    finally:
        _remove_chain(folder / "assets")


def test_a_folder_within_the_limit_is_copied_with_readable_folders(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["submission", "new", "shallow"]) == 0
    folder = tmp_path / "submissions" / "shallow"
    (folder / "assets").mkdir()
    _chain(folder / "assets", MAX_DEPTH - 1)
    with Snapshot(folder) as snap:
        deepest = snap.path / "assets" / Path(*["d"] * (MAX_DEPTH - 1))
        assert (deepest / "asset.txt").is_file()
        assert all(os.stat(p).st_mode & 0o777 == 0o755 for p in [snap.path, *deepest.parents][:MAX_DEPTH])
