"""Results seals: an HMAC-SHA256 that ties a results folder to a harness holding the seal key.

``prb verify`` recomputes every figure from predictions.jsonl, but anyone can
rewrite predictions and recompute figures and hashes. The seal closes that gap:
when a run (or a merge) finishes, the harness writes ``seal.json`` next to
``results.json`` holding an HMAC-SHA256, under a secret key, over the sha256 of
``results.json``, of every file it records (predictions.jsonl, artifacts.json) and
of ``query-key.json`` (the run's query secret, which ``prb verify`` needs to match
predictions to pairs: replacing it shows as a bad seal naming that file, not as
predictions of unknown queries). Only a process holding the key can produce a seal
that checks; the leaderboard shows only sealed runs whose figures also verify. A
resumed run seals only what the harness itself wrote
(:mod:`personalrewardbench.run_progress`).

The key is ``$PRB_SEAL_KEY`` when set (the CI secret: the scoring workflow and the
published board's build read the same one), else a random 32-byte key kept in
``$PRB_CACHE_DIR/seal.key`` (default ``.prb-cache/seal.key`` under the working
directory), created on first use with mode 0600. ``PRB_SEAL_KEY`` set but empty (a
CI secret that is not defined expands to "") is an error, never a silent fall-back
to the key file; with ``PRB_REQUIRE_SEAL_KEY=1`` (set by the CI workflows) the key
must come from ``$PRB_SEAL_KEY`` and the key file is never used or created. The key
never lives inside a results folder or a submission folder (refused with a message),
and methods never see it: the sandbox exposes only the submission's snapshot. What a
seal proves and what it does not is written down in the README ("Trust model").

``seal.json``: ``{"seal_version": 2, "algorithm": "HMAC-SHA256", "key_id": ...,
"files": {name: sha256}, "mac": hex}``. ``key_id`` is a hash of the key (it
reveals nothing of it) so a check can say "sealed with another key".
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from personalrewardbench.cli import UserError
from personalrewardbench.query_keys import QUERY_KEY_FILE
from personalrewardbench.results import (
    HASHED_FILES,
    RESULTS_FILE,
    SEAL_FILE,
    ResultsError,
    read_json,
    sha256_file,
    write_json_atomic,
)

KEY_ENV = "PRB_SEAL_KEY"
REQUIRE_ENV = "PRB_REQUIRE_SEAL_KEY"
KEY_FILE = "seal.key"
SEAL_VERSION = 2  # 2: query-key.json is covered
ALGORITHM = "HMAC-SHA256"
MIN_KEY_CHARS = 16


class SealError(UserError):
    """The seal key cannot be found, created or trusted; the message says why and what to do."""


class NoSealKey(SealError):
    """No key on this machine (no key file, ``$PRB_SEAL_KEY`` unset, not required): runs sealed elsewhere
    cannot be checked here. Every other :class:`SealError` is a misconfiguration."""


@dataclass(frozen=True)
class SealKey:
    secret: bytes
    source: str  # "$PRB_SEAL_KEY" or the key file's path

    @property
    def key_id(self) -> str:
        return hashlib.sha256(b"prb-seal-key-id\0" + self.secret).hexdigest()[:16]


@dataclass(frozen=True)
class SealCheck:
    """``status``: "sealed" (the MAC checks under this key), "unsealed" (no seal.json) or "bad"."""

    status: str
    detail: str
    key_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "sealed"


def key_file_path() -> Path:
    """``$PRB_CACHE_DIR/seal.key``, else ``.prb-cache/seal.key`` under the working directory (absolute)."""
    root = os.environ.get("PRB_CACHE_DIR")
    return (Path(root) if root else Path(".prb-cache")).expanduser().absolute() / KEY_FILE


def _check_location(path: Path) -> None:
    """Refuse a key file inside a submission folder or a results folder (a method could read it there),
    whether it sits there by its own path or through a symbolically linked folder above it."""
    real = path.parent.resolve() / path.name
    for folder in dict.fromkeys([*path.parents, *real.parents]):
        for marker in ("submission.toml", RESULTS_FILE):
            if (folder / marker).exists():
                raise SealError(f"the seal key {path} would sit inside {folder} (it holds {marker}); a method "
                                "could read it there. Set PRB_CACHE_DIR to a folder outside results and "
                                "submissions, or set PRB_SEAL_KEY")


def _read_key_file(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
                     | getattr(os, "O_CLOEXEC", 0))  # O_NONBLOCK: a FIFO is refused below, never waited on
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SealError(f"the seal key {path} is a symbolic link; keys are never read through links") from None
        raise
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise SealError(f"the seal key {path} is not a regular file; delete it and rerun to make a new key")
        if st.st_mode & 0o077:
            raise SealError(f"the seal key {path} is readable by others (mode {stat.S_IMODE(st.st_mode):o}); "
                            f"run chmod 600 {path}")
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            raise SealError(f"the seal key {path} belongs to another user; use your own PRB_CACHE_DIR")
        text = fh.read(4096).decode("ascii", errors="replace").strip()
    if len(text) < 2 * MIN_KEY_CHARS:
        raise SealError(f"the seal key {path} is empty or too short; delete it and rerun to make a new key")
    return text.encode()


def key_required() -> bool:
    """Whether ``$PRB_REQUIRE_SEAL_KEY`` asks for the key from ``$PRB_SEAL_KEY`` only ("1", "true", "yes")."""
    value = os.environ.get(REQUIRE_ENV, "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise SealError(f"{REQUIRE_ENV}={value[:20]!r}: set it to 1 (the key must come from {KEY_ENV}) or leave it unset")


def load_key(*, create: bool = True) -> SealKey:
    """The seal key: ``$PRB_SEAL_KEY`` if set, else the key file (created when ``create``).

    Raises :class:`SealError` when ``$PRB_SEAL_KEY`` is set but empty or shorter than
    :data:`MIN_KEY_CHARS`; when ``$PRB_REQUIRE_SEAL_KEY`` is set and ``$PRB_SEAL_KEY`` is not;
    for a key file that is a link, readable by others, owned by someone else, or placed
    inside a results or submission folder; and, with ``create=False``, when no key file exists.
    """
    required = key_required()  # checked first: a misspelt value is an error whatever else is set
    env = os.environ.get(KEY_ENV)
    if env is not None:
        if not env.strip():
            raise SealError(f"{KEY_ENV} is set but empty (an undefined CI secret expands to an empty string); set "
                            f"it to the seal key, or unset it to use the key file {key_file_path()}")
        if len(env.strip()) < MIN_KEY_CHARS:
            raise SealError(f"{KEY_ENV} is shorter than {MIN_KEY_CHARS} characters; use a random secret, e.g. "
                            "python -c 'import secrets; print(secrets.token_hex(32))'")
        return SealKey(env.strip().encode(), f"${KEY_ENV}")
    if required:
        raise SealError(f"{REQUIRE_ENV} is set, so the seal key must come from {KEY_ENV}, which is not set; pass "
                        "the secret (in GitHub Actions: env PRB_SEAL_KEY: ${{ secrets.PRB_SEAL_KEY }}, with the "
                        "repository secret PRB_SEAL_KEY defined)")
    path = key_file_path()
    _check_location(path)
    if not path.exists() and not path.is_symlink():
        if not create:
            raise NoSealKey(f"no seal key: {path} does not exist and {KEY_ENV} is not set; runs sealed elsewhere "
                            f"cannot be checked here (set {KEY_ENV} or PRB_CACHE_DIR to the key that sealed them)")
        path.parent.mkdir(parents=True, exist_ok=True)
        _create_key_file(path)
    return SealKey(_read_key_file(path), str(path))


def _create_key_file(path: Path) -> None:
    """Write a new random key to ``path`` unless one exists. The key is written in full to a private
    temporary file and then hard-linked into place, so a process racing to create it never reads a
    half-written (empty) key: ``link`` fails when the name exists, and the loser reads the winner's key."""
    tmp = path.with_name(f".{KEY_FILE}.tmp{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path, follow_symlinks=False)
        except FileExistsError:
            pass  # another process made it first: read theirs
        except OSError:  # a file system without hard links: create in place (a racing reader may wait)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
            except FileExistsError:
                return
            with os.fdopen(fd, "w") as fh:
                fh.write(tmp.read_text())
                fh.flush()
                os.fsync(fh.fileno())
    finally:
        tmp.unlink(missing_ok=True)


def _covered_files(run_dir: Path) -> list[str]:
    """results.json, every file results.json records a hash for, every hashed file present, and query-key.json."""
    names = {RESULTS_FILE}
    try:
        recorded = read_json(run_dir / RESULTS_FILE).get("files") or {}
    except (ResultsError, AttributeError):
        recorded = {}
    if isinstance(recorded, Mapping):
        names.update(str(n) for n in recorded if isinstance(n, str) and "/" not in n and n not in ("", ".", ".."))
    names.update(n for n in (*HASHED_FILES, QUERY_KEY_FILE) if os.path.lexists(run_dir / n))
    return sorted(names)


def _mac(key: SealKey, files: Mapping[str, str]) -> str:
    message = json.dumps({"seal_version": SEAL_VERSION, "files": dict(sorted(files.items()))}, sort_keys=True,
                         separators=(",", ":")).encode()
    return hmac.new(key.secret, message, hashlib.sha256).hexdigest()


def seal_run(run_dir: Path | str, key: SealKey | None = None) -> dict:
    """Write ``run_dir/seal.json`` over the folder's results files; returns the seal.

    Raises :class:`ResultsError` when a covered file is missing or a link, :class:`SealError`
    when no usable key exists. The seal has no timestamp: the same files give the same bytes.
    """
    run_dir = Path(run_dir)
    key = key or load_key()
    run_real = run_dir.resolve()
    if key.source != f"${KEY_ENV}" and Path(key.source).resolve().is_relative_to(run_real):
        raise SealError(f"the seal key {key.source} is inside the run folder {run_dir}; set PRB_CACHE_DIR elsewhere")
    files = {name: sha256_file(run_dir / name) for name in _covered_files(run_dir)}
    seal = {"seal_version": SEAL_VERSION, "algorithm": ALGORITHM, "key_id": key.key_id, "files": files,
            "mac": _mac(key, files)}
    write_json_atomic(run_dir / SEAL_FILE, seal)
    return seal


def _query_key_hint(names: list[str]) -> str:
    if QUERY_KEY_FILE not in names:
        return ""
    return (f" ({QUERY_KEY_FILE} holds the run's query secret: without the one the run drew, its predictions "
            "cannot be matched to their pairs; restore the original file from where the run was made, or re-run)")


def check_seal(run_dir: Path | str, key: SealKey | None = None) -> SealCheck:
    """Whether ``run_dir`` carries a seal made with ``key`` (default: :func:`load_key` without creating one)
    over exactly its current files. Never raises for a bad folder: the result says what is wrong."""
    run_dir = Path(run_dir)
    path = run_dir / SEAL_FILE
    if not path.exists() and not path.is_symlink():
        return SealCheck("unsealed", f"no {SEAL_FILE}: the run was not sealed by a harness holding the key")
    try:
        seal = read_json(path, 1 << 20)
    except ResultsError as exc:
        return SealCheck("bad", str(exc))
    files = seal.get("files") if isinstance(seal, dict) else None
    if isinstance(seal, dict) and seal.get("seal_version") == 1:
        return SealCheck("bad", f"{path}: sealed by an older harness (seal version 1, which did not cover "
                                f"{QUERY_KEY_FILE}); re-run the evaluation to seal it with this version")
    if (not isinstance(seal, dict) or seal.get("seal_version") != SEAL_VERSION or not isinstance(files, dict)
            or not isinstance(seal.get("mac"), str) or not isinstance(seal.get("key_id"), str)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())):
        return SealCheck("bad", f"{path}: not a seal this harness writes")
    try:
        key = key or load_key(create=False)
    except SealError as exc:
        return SealCheck("bad", f"cannot check the seal: {exc}", seal["key_id"])
    if not hmac.compare_digest(seal["key_id"], key.key_id):
        return SealCheck("bad", f"sealed with another key (key id {seal['key_id'][:16]}), not the key used here "
                                f"(key id {key.key_id}, from {key.source})", seal["key_id"])
    want = _covered_files(run_dir)
    if sorted(files) != want:
        gone = sorted(set(files) - set(want))
        return SealCheck("bad", f"the seal covers {sorted(files)}, the folder holds {want}: files were added or "
                                f"removed after sealing{_query_key_hint(gone)}", seal["key_id"])
    for name in want:
        try:
            digest = sha256_file(run_dir / name)
        except ResultsError as exc:
            return SealCheck("bad", f"{exc}{_query_key_hint([name])}", seal["key_id"])
        if digest != files[name]:
            return SealCheck("bad", f"{run_dir / name} changed after the run was sealed{_query_key_hint([name])}",
                             seal["key_id"])
    if not hmac.compare_digest(_mac(key, files), seal["mac"]):
        return SealCheck("bad", f"{path}: the MAC does not match (forged, or edited after sealing)", seal["key_id"])
    return SealCheck("sealed", f"sealed with key id {key.key_id}", seal["key_id"])
