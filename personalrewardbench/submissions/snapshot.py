"""The read-only snapshot of a submission that the sandbox sees.

Before an adapter runs, its folder's regular files (code, submission.toml, README and any
assets committed with it; not ``results/``, ``__pycache__`` or ``.git``) are copied into a
fresh temporary folder, which is then bound read-only into the sandbox. Symbolic links are
never followed: one anywhere in the folder (or a FIFO, device or socket) refuses the
submission with the path named, and so does a tree nested deeper than
:data:`~personalrewardbench.submissions.listing.MAX_DEPTH` folders (the walk is iterative and
bounded). The sandbox therefore never sees the live folder, so
nothing the harness writes later, and nothing another process changes there during the
run, reaches the adapter.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

from personalrewardbench.submissions.listing import list_folder
from personalrewardbench.submissions.spec import SubmissionError

MAX_SNAPSHOT_MB = 4096


class Snapshot:
    """A copy of ``folder`` under a new temporary directory; :attr:`path` is the copy.

    The copy is readable by every user (the sandbox may run as uid 65534) and holds only
    regular files and folders. Call :meth:`remove` (or use ``with``) when done. Raises
    SubmissionError naming every symlink or special file, or when the folder holds more
    than ``max_mb`` MiB.
    """

    def __init__(self, folder: str | Path, *, max_mb: int = MAX_SNAPSHOT_MB) -> None:
        self.source = Path(folder)
        files, problems = list_folder(self.source)
        if problems:
            raise SubmissionError(f"{self.source}: cannot be scored:\n" + "\n".join(f"  - {p}" for p in problems))
        self._root = tempfile.mkdtemp(prefix="prb-snapshot-")
        os.chmod(self._root, 0o755)
        self.path = Path(self._root) / "submission"
        try:
            self._copy(files, max_mb * 1024 * 1024)
        except BaseException:
            self.remove()
            raise

    def _copy(self, files: list[str], budget: int) -> None:
        self.path.mkdir(mode=0o755)
        total = 0
        for rel in files:
            src = self.source / rel
            dst = self.path / rel
            try:
                dst.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            except OSError as exc:
                raise SubmissionError(f"{src}: cannot be copied into the snapshot ({exc.strerror}); use shorter "
                                      "paths and fewer nested folders") from None
            try:
                fd = os.open(src, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
            except OSError as exc:
                raise SubmissionError(f"{src}: cannot be read ({exc.strerror}); a symlink or special file is "
                                      "refused") from None
            with os.fdopen(fd, "rb") as fin:
                st = os.fstat(fin.fileno())
                if not stat.S_ISREG(st.st_mode):
                    raise SubmissionError(f"{src}: is not a regular file; remove it")
                total += st.st_size
                if total > budget:
                    raise SubmissionError(f"{self.source}: more than {budget // (1024 * 1024)} MiB of files; keep "
                                          "the submission to its code and the assets it needs")
                try:
                    with open(dst, "xb") as fout:
                        shutil.copyfileobj(fin, fout, 1 << 20)
                except OSError as exc:
                    raise SubmissionError(f"{src}: cannot be copied into the snapshot ({exc.strerror}); use shorter "
                                          "paths and fewer nested folders (or free disk space)") from None
            os.chmod(dst, 0o755 if st.st_mode & 0o111 else 0o644)
        folders = {self.path / parent for rel in files for parent in Path(rel).parents}
        for d in sorted(folders):  # the copied files' folders only: no walk over the tree
            os.chmod(d, 0o755)

    def remove(self) -> None:
        shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
