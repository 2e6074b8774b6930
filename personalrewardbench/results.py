"""Results folders: schema, crash-safe prediction log, provenance, reading, merging.

A run folder ``results/<dataset>/<method>/<run-id>/`` holds

- ``results.json``: scores, per-user figures, cost, provenance, sha256 of the files below
  (schema version :data:`SCHEMA_VERSION`; see the README's "Evaluating a method");
- ``predictions.jsonl``: one line per query ``{"query_id", "pair_id", "user_id", "order", "p"}``;
- ``artifacts.json``: ``{user_id: text}`` from ``Method.artifacts()``;
- ``run.json`` / ``progress.json``: bookkeeping that lets an interrupted run resume.

Predictions are appended chunk by chunk (flushed and fsynced); a line cut short by a
crash is dropped on the next read, so a rerun redoes at most one chunk.
"""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import json
import os
import platform
import shlex
import stat
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from personalrewardbench.cli import UserError

SCHEMA_VERSION = 2  # 2: ci_kind/ci_detail, the reference interval, degradation, dataset.location, seal.json
RESULTS_FILE = "results.json"
PREDICTIONS_FILE = "predictions.jsonl"
ARTIFACTS_FILE = "artifacts.json"
RUN_FILE = "run.json"
PROGRESS_FILE = "progress.json"
SEAL_FILE = "seal.json"
HASHED_FILES = (PREDICTIONS_FILE, ARTIFACTS_FILE)
MAX_FILE_BYTES = 1 << 30  # a run's JSON files are far smaller; a bigger one was not written by the harness
MAX_PREDICTION_LINE = 1 << 16  # bytes; a prediction line is ~150 bytes (ids, order, probability)
LIBRARIES = ("numpy", "scipy", "torch", "transformers", "sentence-transformers", "scikit-learn", "vllm", "openai",
             "httpx", "gguf", "datasets")


class ResultsError(UserError):
    """A results folder that cannot be read, resumed or merged; the message names the file."""


def now_utc() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def open_regular(path: Path | str) -> BinaryIO:
    """Open ``path`` for reading only if it is a regular file; the last component is never followed
    as a symbolic link (``O_NOFOLLOW``), and FIFOs or devices are refused without blocking.

    Raises :class:`ResultsError` naming the file (missing, a link, not a regular file).
    """
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError as exc:
        raise ResultsError(f"{path}: file not found") from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ResultsError(f"{path}: is a symbolic link; results files must be regular files "
                               "(links are never followed)") from None
        raise ResultsError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ResultsError(f"{path}: not a regular file; results files must be plain files")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes_limited(path: Path | str, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file (see :func:`open_regular`), refusing files over ``limit`` bytes."""
    with open_regular(path) as fh:  # ask for no more than the file holds: read(n) reserves n bytes up front
        data = fh.read(min(limit, os.fstat(fh.fileno()).st_size) + 1)
    if len(data) > limit:
        raise ResultsError(f"{path}: larger than {limit // (1 << 20)} MiB; not a results file this harness wrote")
    return data


def sha256_file(path: Path) -> str:
    """sha256 (hex) of a regular file's bytes; links are refused (:func:`open_regular`)."""
    h = hashlib.sha256()
    with open_regular(path) as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to ``path`` via a temporary file and rename (never a half-written file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2, sort_keys=False, ensure_ascii=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def parse_json(data: bytes | str, where: Path | str) -> Any:
    """JSON from ``data``; any failure (syntax, encoding, nesting too deep, an integer too long)
    is a :class:`ResultsError` naming ``where``."""
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{where}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except RecursionError:
        raise ResultsError(f"{where}: JSON nested too deeply to be a results file") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{where}: not valid JSON ({str(exc)[:120]})") from None


def read_json(path: Path, limit: int = MAX_FILE_BYTES) -> Any:
    """A JSON file that must be a regular file (never a link) of at most ``limit`` bytes."""
    return parse_json(read_bytes_limited(path, limit), path)


def prediction_line(record: Mapping[str, Any]) -> str:
    """The canonical one-line JSON of a prediction (fixed key order)."""
    return json.dumps({k: record[k] for k in ("query_id", "pair_id", "user_id", "order", "p")}, ensure_ascii=False)


def prediction_bytes(records: Iterable[Mapping[str, Any]]) -> bytes:
    """The bytes predictions.jsonl holds for ``records``: one :func:`prediction_line` each, UTF-8."""
    return "".join(prediction_line(r) + "\n" for r in records).encode("utf-8")


class PredictionLog:
    """Append-only, crash-safe ``predictions.jsonl``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def read(self, *, repair: bool = False) -> list[dict[str, Any]]:
        """All complete lines. A last line cut short by a crash is dropped (and cut off the
        file when ``repair``); a bad line elsewhere is an error naming the line."""
        if not self.path.exists():
            return []
        out: list[dict[str, Any]] = []
        good = 0  # bytes in complete lines; what follows the last newline is a cut-short write
        tail = b""
        with open_regular(self.path) as fh:  # read line by line: memory follows the records, not the file
            if os.fstat(fh.fileno()).st_size > MAX_FILE_BYTES:
                raise ResultsError(f"{self.path}: larger than {MAX_FILE_BYTES >> 20} MiB; not a predictions file "
                                   "this harness wrote")
            for i, raw in enumerate(iter(lambda: fh.readline(MAX_PREDICTION_LINE + 1), b"")):
                if not raw.endswith(b"\n"):
                    if len(raw) > MAX_PREDICTION_LINE:
                        raise ResultsError(f"{self.path}: line {i + 1} is longer than {MAX_PREDICTION_LINE} bytes; "
                                           "not a prediction line this harness wrote")
                    tail = raw
                    break
                good += len(raw)
                if not raw.strip():
                    continue
                try:
                    rec = json.loads(raw)
                except (ValueError, RecursionError) as exc:
                    raise ResultsError(f"{self.path}: line {i + 1} is not valid JSON ({str(exc)[:80]}); "
                                       "delete the line or rerun with --no-resume") from None
                if not isinstance(rec, dict):
                    raise ResultsError(f"{self.path}: line {i + 1} is not a JSON object")
                out.append(rec)
        if repair and tail:
            with self.path.open("r+b") as fh:
                fh.truncate(good)
                fh.flush()
                os.fsync(fh.fileno())
        return out

    def has_partial_line(self) -> bool:
        if not self.path.exists():
            return False
        with open_regular(self.path) as fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                return False
            fh.seek(size - 1)
            return fh.read(1) != b"\n"

    def append(self, records: Iterable[Mapping[str, Any]]) -> bytes:
        """Append ``records`` (flushed and fsynced); returns the bytes written."""
        data = prediction_bytes(records)
        if data:
            with self.path.open("ab") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        return data

    def rewrite(self, records: Iterable[Mapping[str, Any]]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        with tmp.open("w", encoding="utf-8") as fh:
            for r in records:
                fh.write(prediction_line(r) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)


def read_predictions(run_dir: Path) -> list[dict[str, Any]]:
    """predictions.jsonl of a finished run (strict: every line must be complete)."""
    path = Path(run_dir) / PREDICTIONS_FILE
    if not path.exists():
        raise ResultsError(f"{path}: file not found")
    log = PredictionLog(path)
    if log.has_partial_line():
        raise ResultsError(f"{path}: last line is incomplete (an interrupted run?); rerun `prb evaluate` to resume")
    return log.read()


def read_results(run_dir: Path | str) -> dict[str, Any]:
    """results.json of ``run_dir`` (a folder, or the results.json path itself)."""
    run_dir = Path(run_dir)
    path = run_dir if run_dir.name == RESULTS_FILE else run_dir / RESULTS_FILE
    res = read_json(path)
    if not isinstance(res, dict) or res.get("schema_version") != SCHEMA_VERSION:
        raise ResultsError(f"{path}: schema_version {res.get('schema_version') if isinstance(res, dict) else None!r} "
                           f"is not {SCHEMA_VERSION}; re-evaluate with this version of prb")
    return res


def file_hashes(run_dir: Path) -> dict[str, str]:
    return {name: sha256_file(Path(run_dir) / name) for name in HASHED_FILES if (Path(run_dir) / name).exists()}


def finished_results(out_dir: Path, fingerprint: Mapping[str, Any], *, resamples: int,
                     seed: int) -> dict[str, Any] | None:
    """The results of a run already finished in ``out_dir`` with this fingerprint and bootstrap, else None.

    Finished means: results.json reads, run.json holds the same fingerprint, the sha256 of every
    file results.json lists still matches, and (for a scored run) the bootstrap used the same
    resamples and seed. A rerun then returns these results without touching any file, so a resumed
    run leaves finished results byte-identical.
    """
    if not (out_dir / RESULTS_FILE).is_file() or not (out_dir / RUN_FILE).is_file():
        return None
    try:
        saved = read_json(out_dir / RUN_FILE)
        res = read_results(out_dir)
    except ResultsError:
        return None
    same = json.dumps(saved, sort_keys=True, default=str) == json.dumps(dict(fingerprint), sort_keys=True,
                                                                        default=str)
    if not same or res.get("status") not in ("ok", "not_applicable"):
        return None
    recorded = res.get("files") or {}
    if set(recorded) != {n for n in (PREDICTIONS_FILE, ARTIFACTS_FILE) if (out_dir / n).exists()} \
            or file_hashes(out_dir) != recorded:
        return None
    if res.get("status") == "ok":
        boot = (res.get("scores") or {}).get("bootstrap") or {}
        if boot.get("resamples") != resamples or boot.get("seed") != seed:
            return None
    return res


# ------------------------------------------------------------------ provenance


def git_commit(repo: Path | None = None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the repository holding the package, or (None, None)."""
    repo = repo or Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=20, check=True).stdout.strip() != ""
        return sha or None, dirty
    except (OSError, subprocess.SubprocessError):
        return None, None


def library_versions(names: Sequence[str] = LIBRARIES) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for n in names:
        try:
            out[n] = version(n)
        except PackageNotFoundError:
            continue
    return out


def prompt_template_hashes(method: Any) -> dict[str, str]:
    """sha256 of each prompt template a method exposes: attribute ``prompt_templates``
    (dict name -> text, or a callable returning one), or ``usage()["prompt_template_hashes"]``."""
    templates = getattr(method, "prompt_templates", None)
    if callable(templates):
        templates = templates()
    out: dict[str, str] = {}
    if isinstance(templates, Mapping):
        out.update({str(k): sha256_text(str(v)) for k, v in sorted(templates.items())})
    try:
        usage = method.usage() or {}
    except Exception:  # noqa: BLE001 - a method's usage() must not sink a finished run
        usage = {}
    hashed = usage.get("prompt_template_hashes") if isinstance(usage, Mapping) else None
    if isinstance(hashed, Mapping):
        out.update({str(k): str(v) for k, v in hashed.items()})
    return out


def provenance(*, method: Any, llm: Any, seed: int, command: str | None, started_at: str) -> dict[str, Any]:
    from personalrewardbench import __version__
    from personalrewardbench.threads import current_settings

    commit, dirty = git_commit()
    return {
        "package_version": __version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "command": command if command is not None else shlex.join(sys.argv),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "libraries": library_versions(),
        "llm_identity": getattr(llm, "identity", None) if llm is not None else None,
        "prompt_template_hashes": prompt_template_hashes(method),
        "seed": seed,
        "threads": current_settings(),  # CPU threads chosen (--threads / available CPUs) and the OpenMP wait policy
        "started_at": started_at,
        "finished_at": now_utc(),
    }


# The folder walks live in run_folders.py; their names stay importable from here.
from personalrewardbench.run_folders import (  # noqa: E402, F401
    MAX_FOLDER_DEPTH,
    SITE_MARKER,
    find_runs,
    scan_folders,
    unmatched_pattern,
    walk_run_dirs,
)

