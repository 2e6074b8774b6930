"""Opaque query ids and the per-run secret that keys them.

A test pair reaches a method as two :class:`~personalrewardbench.data.schema.Query`
objects (chosen shown first, chosen shown second). Each query id is an HMAC-SHA256 of
(pair id, order) under a **random secret drawn for each evaluation** (32 bytes from
:func:`secrets.token_bytes`). The secret is kept only in the run folder
(``query-key.json``, mode 0600), which a sandboxed method never sees; nothing a method
receives (seed, benchmark content hash, run.json, results of other runs) lets it
rebuild an id, so the ids say nothing about pair or order. Resuming a run re-reads the
secret, so ids stay stable within one run folder. A merged run (``prb merge``) keeps one
entry per shard (each shard drew its own secret) with the users it covers; ``prb verify``
rebuilds the expected ids from these entries.

File format (``query-key.json``)::

    {"format": "prb-query-key/1",
     "keys": [{"secret": "<64 hex digits>", "users": null}]}     # null: the run's selected users

A merged run lists one entry per shard, each with its sorted user ids.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from personalrewardbench.data.schema import PreferencePair, Query
from personalrewardbench.errors import MethodError

QUERY_KEY_FILE = "query-key.json"
KEY_FORMAT = "prb-query-key/1"
SECRET_BYTES = 32
ID_HEX_DIGITS = 24


@dataclass(frozen=True, slots=True)
class QueryKey:
    """The evaluator's private answer key for one query."""

    pair_id: str
    user_id: str
    chosen_first: bool

    @property
    def order(self) -> str:
        return "chosen_first" if self.chosen_first else "chosen_second"


@dataclass(frozen=True)
class KeyEntry:
    """One secret and the users whose queries it keys (None: all users of the run)."""

    secret: bytes
    users: tuple[str, ...] | None = None


class QueryKeyError(MethodError):
    """A run folder's query-key.json is missing or malformed; the message names the file and the fix."""


def new_secret() -> bytes:
    """A fresh random secret (32 bytes from the OS's CSPRNG)."""
    return secrets.token_bytes(SECRET_BYTES)


def fixed_secret(seed: int) -> bytes:
    """A deterministic key derived from ``seed``: for unit tests and benchmark scripts only.

    Anyone who knows the seed can rebuild these ids; :func:`run_evaluation
    <personalrewardbench.evaluate.run_evaluation>` never uses it.
    """
    return hashlib.sha256(f"prb-fixed-query-key\0{int(seed)}".encode()).digest()


def query_id_for(pair_id: str, chosen_first: bool, secret: bytes) -> str:
    """Opaque query id: the first 24 hex digits (96 bits) of HMAC-SHA256(secret, pair id, order)."""
    if not isinstance(secret, bytes | bytearray) or len(secret) < 16:
        raise TypeError("query_id_for needs a secret of at least 16 bytes (see new_secret())")
    order = "chosen_first" if chosen_first else "chosen_second"
    return hmac.new(bytes(secret), f"prb-query\0{pair_id}\0{order}".encode(), hashlib.sha256).hexdigest()[
        :ID_HEX_DIGITS]


def make_queries(pairs: Sequence[PreferencePair], secret: bytes | int | None = None, *,
                 seed: int | None = None) -> tuple[list[Query], dict[str, QueryKey]]:
    """Two label-free queries per pair (both orders), sorted by their opaque ids, plus the key table.

    ``secret``: the run's secret (bytes). An int ``secret`` or ``seed`` gives the deterministic
    :func:`fixed_secret` key instead (unit tests and benchmark scripts only). Raises
    MethodError when a pair id appears twice.
    """
    if isinstance(secret, bytes | bytearray):
        key = bytes(secret)
    else:
        key = fixed_secret(int(secret if secret is not None else seed or 0))
    queries: list[Query] = []
    keys: dict[str, QueryKey] = {}
    for p in pairs:
        for chosen_first in (True, False):
            qid = query_id_for(p.pair_id, chosen_first, key)
            if qid in keys:
                raise MethodError(f"pair {p.pair_id} appears twice in the benchmark; pair ids must be unique")
            first, second = (p.chosen, p.rejected) if chosen_first else (p.rejected, p.chosen)
            queries.append(Query(query_id=qid, user_id=p.user_id, context=p.context, first=first, second=second))
            keys[qid] = QueryKey(p.pair_id, p.user_id, chosen_first)
    queries.sort(key=lambda q: q.query_id)
    return queries, keys


# ------------------------------------------------------------------ the key file


def write_key_file(run_dir: Path | str, entries: Sequence[KeyEntry]) -> Path:
    """Write ``run_dir/query-key.json`` (mode 0600, atomically); return its path."""
    path = Path(run_dir) / QUERY_KEY_FILE
    data = {"format": KEY_FORMAT,
            "keys": [{"secret": e.secret.hex(), "users": None if e.users is None else sorted(e.users)}
                     for e in entries]}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
        fh.write("\n")
    os.replace(tmp, path)
    return path


def read_key_file(run_dir: Path | str) -> list[KeyEntry]:
    """The entries of ``run_dir/query-key.json``; QueryKeyError naming the file when missing or malformed."""
    path = Path(run_dir) / QUERY_KEY_FILE
    if path.is_symlink():
        raise QueryKeyError(f"{path}: is a symbolic link; symlinks in run folders are never followed")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):  # a FIFO or device: never wait on it
                raise QueryKeyError(f"{path}: not a regular file; rerun the evaluation with --no-resume")
            data: Any = json.loads(fh.read(64 * 1024 * 1024))
    except FileNotFoundError:
        raise QueryKeyError(f"{path}: missing; this run folder has no query secret, so its query ids cannot be "
                            "checked (runs made before per-run secrets need re-running)") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise QueryKeyError(f"{path}: unreadable ({type(exc).__name__}); rerun the evaluation with --no-resume") \
            from None
    return _parse_entries(data, path)


def _parse_entries(data: Any, path: Path) -> list[KeyEntry]:
    bad = QueryKeyError(f"{path}: not a query key file (want {{\"format\": \"{KEY_FORMAT}\", \"keys\": [{{\"secret\": "
                        "hex, \"users\": null or [ids]}]}); rerun the evaluation with --no-resume")
    if not isinstance(data, Mapping) or data.get("format") != KEY_FORMAT or not isinstance(data.get("keys"), list):
        raise bad
    out: list[KeyEntry] = []
    for e in data["keys"]:
        if not isinstance(e, Mapping) or not isinstance(e.get("secret"), str):
            raise bad
        try:
            secret = bytes.fromhex(e["secret"])
        except ValueError:
            raise bad from None
        users = e.get("users")
        if len(secret) < 16 or not (users is None or isinstance(users, list) and all(isinstance(u, str) for u in users)):
            raise bad
        out.append(KeyEntry(secret, None if users is None else tuple(users)))
    if not out:
        raise bad
    return out


def run_secret(run_dir: Path | str, *, has_predictions: bool) -> bytes:
    """The secret of the run in ``run_dir``: re-read when the folder has one, else drawn and saved.

    A folder with predictions but no key file cannot be resumed (its ids are unknown):
    QueryKeyError tells the user to rerun with --no-resume.
    """
    path = Path(run_dir) / QUERY_KEY_FILE
    if path.exists() or path.is_symlink():
        entries = read_key_file(run_dir)
        if len(entries) != 1 or entries[0].users is not None:
            raise QueryKeyError(f"{path}: holds the keys of a merged run; evaluate into a fresh folder")
        return entries[0].secret
    if has_predictions:
        raise QueryKeyError(f"{run_dir}: has predictions but no {QUERY_KEY_FILE}, so they cannot be resumed; "
                            "rerun with --no-resume")
    secret = new_secret()
    write_key_file(run_dir, [KeyEntry(secret)])
    return secret


def keys_for_run(entries: Iterable[KeyEntry], pairs_by_user: Mapping[str, Sequence[PreferencePair]],
                 users: Sequence[str]) -> dict[str, QueryKey]:
    """Every expected query id of a run -> its key, from the run's key entries.

    ``pairs_by_user``: each user's test pairs; ``users``: the run's selected users (for
    entries with ``users`` None). Raises QueryKeyError when two entries cover one user.
    """
    out: dict[str, QueryKey] = {}
    covered: set[str] = set()
    for entry in entries:
        who = list(users) if entry.users is None else list(entry.users)
        twice = covered & set(who)
        if twice:
            raise QueryKeyError(f"{QUERY_KEY_FILE}: user {sorted(twice)[0]} is keyed by two entries")
        covered.update(who)
        pairs = sorted((p for u in who for p in pairs_by_user.get(u, ())), key=lambda p: p.pair_id)
        out.update(make_queries(pairs, entry.secret)[1])
    return out
