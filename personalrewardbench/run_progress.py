"""Authenticated run progress: a resumed run keeps only what this harness itself wrote.

The seal (:mod:`personalrewardbench.seal`) vouches for a finished run folder. A run that
is interrupted and resumed must not seal what someone else put in its folder meanwhile
(predictions edited with their ids kept, a replaced artifacts.json, a planted query
secret, cost totals rewritten). So after every step that writes into the folder the
harness rewrites ``progress.json`` with its own record of what it wrote, and an
HMAC-SHA256 under the seal key over that record:

- ``log.chunks``: one checkpoint per chunk appended to predictions.jsonl,
  ``[bytes, sha256]`` of the file's first ``bytes`` bytes; ``log.sorted``: the same for
  the sorted file a finished run leaves (written just before the file is replaced);
- ``artifacts_sha256`` and ``query_key_sha256``: the sha256 of artifacts.json and of
  query-key.json as the harness wrote them (the secret itself never appears);
- ``totals``: cumulative cost over all invocations (tokens, seconds, LLM counters);
- ``binding``: a hash of the run's fingerprint (method, config, benchmark content hash,
  users, seed, LLM), computed by the harness, never read from the folder.

On resume, :func:`trusted_resume` believes the folder only as far as that MAC vouches:

- progress.json missing, malformed, written under another key or for another run, or a
  query-key.json that is not the one recorded: nothing in the folder is kept (predictions,
  artifacts, the query secret and the cost totals are discarded; a new secret is drawn);
- otherwise predictions.jsonl is kept up to the longest checkpoint whose sha256 matches
  (or whole, when it matches the sorted record); the rest (a line cut short by a crash, a
  chunk appended after the last checkpoint, or edited lines) is cut off and predicted
  again; artifacts.json is kept only when its sha256 matches, else the method is fitted
  again.

Anything discarded is said in :attr:`Resume.note` (printed by the harness, and counted in
``results.json`` as ``cost.discarded_on_resume``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from personalrewardbench.query_keys import QUERY_KEY_FILE
from personalrewardbench.results import (
    ARTIFACTS_FILE,
    PREDICTIONS_FILE,
    PROGRESS_FILE,
    RESULTS_FILE,
    SEAL_FILE,
    ResultsError,
    open_regular,
    read_json,
    sha256_file,
    write_json_atomic,
)
from personalrewardbench.seal import SealKey

FORMAT = "prb-progress/2"
MAX_PROGRESS_BYTES = 16 << 20  # one checkpoint per chunk: ~100 bytes each
Checkpoint = tuple[int, str]  # (bytes of predictions.jsonl, sha256 of those bytes)


def binding_of(fingerprint: Mapping[str, Any]) -> str:
    """sha256 of a run's fingerprint (canonical JSON): ties progress.json to one run setup."""
    text = json.dumps(fingerprint, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(b"prb-run\0" + text.encode()).hexdigest()


@dataclass
class Resume:
    """What a run may keep from its folder (see module doc), and the running state of the log."""

    totals: dict[str, float] = field(default_factory=dict)
    chunks: list[Checkpoint] = field(default_factory=list)
    artifacts_ok: bool = False
    query_key_sha256: str | None = None
    artifacts_sha256: str | None = None
    discarded: int = 0  # prediction lines dropped because nothing vouched for them
    note: str | None = None
    log_hash: Any = field(default_factory=hashlib.sha256)  # sha256 over the kept log bytes, extended on append
    log_bytes: int = 0
    resumed: bool = False  # the folder held work of an earlier invocation that is kept


def _mac(key: SealKey, record: Mapping[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "mac"}
    message = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hmac.new(key.secret, b"prb-progress\0" + message, hashlib.sha256).hexdigest()


def _file_sha(path: Path) -> str | None:
    """sha256 of a regular file, None when absent; a link, FIFO or device counts as a mismatch ("!")."""
    if not os.path.lexists(path):
        return None
    try:
        return sha256_file(path)
    except ResultsError:
        return "!"


def _count_lines(path: Path, start: int) -> int:
    """Complete or partial lines in ``path`` after byte ``start`` (memory: one block)."""
    n, last = 0, b"\n"
    with open_regular(path) as fh:
        fh.seek(start)
        for block in iter(lambda: fh.read(1 << 20), b""):
            n += block.count(b"\n")
            last = block[-1:]
    return n + (last != b"\n")


def _parse(raw: Any) -> tuple[dict[str, float], list[Checkpoint], Checkpoint | None] | None:
    """The fields of a progress record, or None when its shape is not what this harness writes."""
    try:
        totals = {str(k): float(v) for k, v in raw["totals"].items()}
        chunks = [(int(b), str(h)) for b, h in raw["log"]["chunks"]]
        srt = raw["log"].get("sorted")
        sorted_cp = None if srt is None else (int(srt[0]), str(srt[1]))
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
        return None
    if any(b < 0 for b, _ in chunks) or [b for b, _ in chunks] != sorted(b for b, _ in chunks):
        return None
    return totals, chunks, sorted_cp


def _read_record(out_dir: Path, key: SealKey, binding: str) -> tuple[dict[str, Any] | None, str]:
    """progress.json when its MAC checks for this run under ``key``, else (None, why not)."""
    path = out_dir / PROGRESS_FILE
    if not os.path.lexists(path):
        return None, f"no {PROGRESS_FILE}"
    try:
        raw = read_json(path, MAX_PROGRESS_BYTES)
    except ResultsError as exc:
        return None, str(exc)
    if not isinstance(raw, dict) or raw.get("format") != FORMAT or not isinstance(raw.get("mac"), str):
        return None, f"{path} is not a progress record this harness writes (format {FORMAT})"
    if raw.get("key_id") != key.key_id:
        return None, (f"{path} was written under another seal key (key id {str(raw.get('key_id'))[:16]}), not "
                      f"this machine's (key id {key.key_id}, from {key.source})")
    if not hmac.compare_digest(_mac(key, raw), raw["mac"]):
        return None, f"{path}: the MAC does not match (edited after the harness wrote it)"
    if raw.get("binding") != binding:
        return None, f"{path} belongs to another run setup"
    return raw, ""


def _wipe(out_dir: Path) -> None:
    for name in (PREDICTIONS_FILE, ARTIFACTS_FILE, QUERY_KEY_FILE, PROGRESS_FILE, RESULTS_FILE, SEAL_FILE):
        if os.path.lexists(out_dir / name):
            os.unlink(out_dir / name)


def _check_log(pred: Path, size: int, chunks: list[Checkpoint], sorted_cp: Checkpoint | None
               ) -> tuple[int, list[Checkpoint], Any]:
    """(bytes kept, checkpoints kept, sha256 state over the kept bytes) of predictions.jsonl."""
    if sorted_cp is not None and size == sorted_cp[0]:
        h = hashlib.sha256()
        with open_regular(pred) as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() == sorted_cp[1]:
            return size, [sorted_cp], h
    kept, kept_chunks, h = 0, [], hashlib.sha256()
    with open_regular(pred) as fh:
        for cp_bytes, cp_sha in chunks:
            if cp_bytes > size:
                break
            step, want = h.copy(), cp_bytes - kept
            while want > 0:
                block = fh.read(min(want, 1 << 20))
                if not block:
                    break
                step.update(block)
                want -= len(block)
            if want or step.hexdigest() != cp_sha:
                break  # a chain: no later checkpoint can match once this one does not
            kept, h = cp_bytes, step
            kept_chunks.append((cp_bytes, cp_sha))
    return kept, kept_chunks, h


def trusted_resume(out_dir: Path, key: SealKey, binding: str) -> Resume:
    """Check ``out_dir`` against its progress.json and cut it back to what the MAC vouches for.

    Files not vouched for are deleted or truncated (see module doc); the returned
    :class:`Resume` holds the kept cost totals, log checkpoints and running log hash.
    Never raises for a tampered or half-written folder; raises OSError only when a file
    cannot be deleted or truncated.
    """
    pred = out_dir / PREDICTIONS_FILE
    st = os.lstat(pred) if os.path.lexists(pred) else None
    regular = st is not None and stat.S_ISREG(st.st_mode)  # a link, FIFO or device is never read
    size = st.st_size if regular else 0
    raw, why = _read_record(out_dir, key, binding)
    fields = _parse(raw) if raw is not None else None
    if raw is not None and fields is None:
        why = f"{out_dir / PROGRESS_FILE} has fields this harness does not write"
    if fields is not None and raw is not None and _file_sha(out_dir / QUERY_KEY_FILE) != raw.get("query_key_sha256"):
        fields, why = None, f"{out_dir / QUERY_KEY_FILE} is not the query secret this run drew"
    if fields is None or raw is None:
        had = [n for n in (PREDICTIONS_FILE, ARTIFACTS_FILE, QUERY_KEY_FILE) if os.path.lexists(out_dir / n)]
        lines = _count_lines(pred, 0) if size else 0
        _wipe(out_dir)
        note = None
        if had:
            note = (f"{out_dir}: nothing in the folder is vouched for ({why}); discarded {', '.join(had)}"
                    f"{f' ({lines} prediction lines)' if lines else ''} and starting the run afresh")
        return Resume(discarded=lines, note=note)
    totals, chunks, sorted_cp = fields
    if st is not None and not regular:
        os.unlink(pred)
    kept, kept_chunks, h = _check_log(pred, size, chunks, sorted_cp) if size else (0, [], hashlib.sha256())
    discarded = _count_lines(pred, kept) if size > kept else 0
    if size > kept:
        with open(pred, "r+b") as fh:
            fh.truncate(kept)
            fh.flush()
            os.fsync(fh.fileno())
    art_sha = raw.get("artifacts_sha256")
    artifacts_ok = art_sha is not None and _file_sha(out_dir / ARTIFACTS_FILE) == art_sha
    if not artifacts_ok and os.path.lexists(out_dir / ARTIFACTS_FILE):
        os.unlink(out_dir / ARTIFACTS_FILE)
    notes = []
    if discarded:
        notes.append(f"{discarded} prediction line(s) after byte {kept} of {pred} are not lines this harness "
                     "wrote and checkpointed (cut short by a crash, or edited); they are predicted again")
    if art_sha is not None and not artifacts_ok:
        notes.append(f"{out_dir / ARTIFACTS_FILE} is not the file this harness wrote; the method is fitted again")
    return Resume(totals=totals, chunks=kept_chunks, artifacts_ok=artifacts_ok,
                  query_key_sha256=raw.get("query_key_sha256"), artifacts_sha256=art_sha if artifacts_ok else None,
                  discarded=discarded, note="; ".join(notes) or None, log_hash=h, log_bytes=kept,
                  resumed=bool(kept or artifacts_ok or totals))


class ProgressBook:
    """The harness's authenticated record of one run folder (see module doc).

    ``open`` checks the folder (:func:`trusted_resume`); ``appended``/``wrote`` record what
    the harness writes; ``save`` rewrites progress.json with the MAC; ``rewrite_sorted``
    replaces predictions.jsonl with its sorted form without a moment where neither the old
    nor the new file is vouched for.
    """

    def __init__(self, out_dir: Path, key: SealKey, fingerprint: Mapping[str, Any], state: Resume) -> None:
        self.out_dir, self.key, self.binding, self.state = Path(out_dir), key, binding_of(fingerprint), state
        self._sorted: Checkpoint | None = None

    @classmethod
    def open(cls, out_dir: Path, key: SealKey, fingerprint: Mapping[str, Any]) -> ProgressBook:
        return cls(out_dir, key, fingerprint, trusted_resume(Path(out_dir), key, binding_of(fingerprint)))

    def appended(self, data: bytes) -> None:
        """``data`` was appended to predictions.jsonl: extend the running hash, add a checkpoint."""
        if data:
            self.state.log_hash.update(data)
            self.state.log_bytes += len(data)
            self.state.chunks.append((self.state.log_bytes, self.state.log_hash.hexdigest()))

    def wrote(self, name: str) -> None:
        """Record the sha256 of ``name`` (artifacts.json or query-key.json) as the harness just wrote it."""
        digest = _file_sha(self.out_dir / name)
        if name == ARTIFACTS_FILE:
            self.state.artifacts_sha256 = digest
        elif name == QUERY_KEY_FILE:
            self.state.query_key_sha256 = digest
        else:
            raise ValueError(f"progress records no sha256 for {name}")

    def save(self, totals: Mapping[str, float]) -> None:
        """Write progress.json (atomically, with its MAC) from the record and the cost ``totals``."""
        record: dict[str, Any] = {
            "format": FORMAT,
            "key_id": self.key.key_id,
            "binding": self.binding,
            "totals": dict(totals),
            "log": {"chunks": [list(c) for c in self.state.chunks],
                    "sorted": list(self._sorted) if self._sorted else None},
            "artifacts_sha256": self.state.artifacts_sha256,
            "query_key_sha256": self.state.query_key_sha256,
        }
        record["mac"] = _mac(self.key, record)
        write_json_atomic(self.out_dir / PROGRESS_FILE, record)

    def rewrite_sorted(self, data: bytes, totals: Mapping[str, float]) -> None:
        """Replace predictions.jsonl by ``data`` (its sorted form): record ``data``'s checkpoint first (a crash
        before the replace leaves the old file, still vouched for by the chain), then replace the file."""
        h = hashlib.sha256(data)
        self._sorted = (len(data), h.hexdigest())
        self.save(totals)
        pred = self.out_dir / PREDICTIONS_FILE
        tmp = pred.with_name(f".{pred.name}.tmp{os.getpid()}")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, pred)
        self.state.chunks, self.state.log_hash, self.state.log_bytes = [self._sorted], h, len(data)
