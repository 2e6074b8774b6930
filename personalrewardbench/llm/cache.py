"""Content-addressed SQLite request cache shared by every LLM backend.

A key is the sha256 of a JSON document naming the backend identity, the
request kind, the sampling parameters, the rendered prompt and the choices
(see :func:`request_key`). Values are small JSON documents. The database runs
in WAL mode with a busy timeout, one connection per thread, so several threads
and several processes on one machine can read and write it at once. Writers
commit each batch as it finishes: a run killed half-way keeps everything it
had finished, and a rerun answers those requests from the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

DEFAULT_CACHE_DIR = Path(".prb-cache") / "llm"
DB_NAME = "requests.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    identity TEXT NOT NULL,
    value TEXT NOT NULL,
    created REAL NOT NULL
)
"""
_IN_CHUNK = 500  # SQLite's host-parameter limit is 999 on old builds


def request_key(identity: str, kind: str, params: Mapping[str, Any], prompt: str,
                choices: Sequence[str] = ()) -> str:
    """The content address of one request."""
    doc = json.dumps(
        {"identity": identity, "kind": kind, "params": dict(params), "prompt": prompt, "choices": list(choices)},
        sort_keys=True, ensure_ascii=False, separators=(",", ":"),
    )
    return hashlib.sha256(doc.encode("utf-8")).hexdigest()


def default_cache_dir() -> Path:
    """``$PRB_CACHE_DIR/llm`` if set, else ``.prb-cache/llm`` under the working directory."""
    env = os.environ.get("PRB_CACHE_DIR")
    return Path(env) / "llm" if env else DEFAULT_CACHE_DIR


class RequestCache:
    """Thread- and process-safe key -> JSON value store backed by one SQLite file."""

    def __init__(self, cache_dir: str | os.PathLike[str] | None = None) -> None:
        from personalrewardbench.llm.base import LLMError

        self.dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LLMError(f"cannot create the LLM cache folder {self.dir}: {exc}; "
                           "pass a writable --cache-dir or --no-cache") from exc
        self.path = self.dir / DB_NAME
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        conn = self._conn()
        with conn:
            conn.execute(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=60000")
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Return {key: value} for the keys present."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, Any] = {}
        conn = self._conn()
        for i in range(0, len(keys), _IN_CHUNK):
            chunk = keys[i:i + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            for key, value in conn.execute(f"SELECT key, value FROM requests WHERE key IN ({marks})", chunk):
                found[key] = json.loads(value)
        return found

    def put_many(self, items: Iterable[tuple[str, str, str, Any]]) -> None:
        """Store (key, kind, identity, value) rows in one committed transaction."""
        rows = [(k, kind, ident, json.dumps(v, ensure_ascii=False), time.time()) for k, kind, ident, v in items]
        if not rows:
            return
        conn = self._conn()
        for attempt in range(5):
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany("INSERT OR REPLACE INTO requests VALUES (?, ?, ?, ?, ?)", rows)
                conn.execute("COMMIT")
                return
            except sqlite3.OperationalError:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if attempt == 4:
                    raise
                time.sleep(0.2 * 2 ** attempt)

    def __len__(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM requests").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            for conn in self._conns:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._conns.clear()
        self._local = threading.local()
