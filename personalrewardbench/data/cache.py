"""On-disk cache of built benchmarks, keyed by the hash of inputs + settings.

Inputs are identified by their content (sha256 of local files, or hub repo +
pinned revision), so a cached build is reused exactly when it would come out the
same. Entries are pickles of plain tuples (messages and contexts stored once,
referenced by index: fast to read back) written atomically under the cache
folder (our own files only; never point the cache at a folder others write to).

An entry is never trusted on its word: it is read with an unpickler that refuses every
global (plain containers, strings and numbers only, so a planted entry cannot run code),
and the benchmark's content hash is recomputed from the pairs and profiles read back and
compared with the one its manifest names; a mismatch (an edited or corrupt entry) is
treated as a cache miss and the benchmark is rebuilt. The check is not free: for 50,000
pairs (a 106 MiB entry) reading took 1.4 s and reading plus checking 3.6 s on a busy
2-core machine, once per process and benchmark. It is kept because a stored digest could
be rewritten along with the entry; only recomputing makes the content hash a run records
(and ``prb verify`` checks against) name the pairs it was scored on.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from personalrewardbench.data.common import default_cache_dir, file_sha256, stable_hash
from personalrewardbench.data.schema import Benchmark, Manifest, Message, PreferencePair, content_hash

CACHE_FORMAT = "7"  # 5: text repairs and warning locations in the manifest; prism pairs; 6: meta["source_position"]; 7: format-mark, NaN and very-long-text warnings


def build_key(kind: str, sources: Sequence[Mapping[str, Any]], settings: Mapping[str, Any]) -> str:
    from personalrewardbench.data.store import package_version

    blob = json.dumps({"kind": kind, "sources": list(sources), "settings": dict(settings)}, sort_keys=True,
                      default=str)
    return stable_hash(CACHE_FORMAT, package_version(), blob)


def _path(key: str, cache_dir: str | os.PathLike[str] | None) -> Path:
    return Path(cache_dir) if cache_dir is not None else default_cache_dir()


def _pack(bench: Benchmark) -> dict[str, Any]:
    """Plain tuples; every distinct text, message and context stored once."""
    text_ix: dict[str, int] = {}
    keys_ix: dict[tuple[str, ...], int] = {}
    msg_ix: dict[Message, int] = {}
    ctx_ix: dict[tuple[Message, ...], int] = {}
    contexts: list[tuple[int, ...]] = []
    pairs = []

    def t(s: str) -> int:
        return text_ix.setdefault(s, len(text_ix))

    for p in bench.pairs:
        ci = ctx_ix.get(p.context)
        if ci is None:
            ci = ctx_ix[p.context] = len(contexts)
            contexts.append(tuple(msg_ix.setdefault(m, len(msg_ix)) for m in p.context))
        keys = tuple(p.meta)
        ki = keys_ix.setdefault(keys, len(keys_ix))
        pairs.append((p.pair_id, p.user_id, p.dataset, ci, t(p.chosen), t(p.rejected), p.split, ki,
                      tuple(p.meta.values())))
    messages = [(m.role, t(m.content)) for m in msg_ix]
    return {"texts": list(text_ix), "meta_keys": list(keys_ix), "messages": messages, "contexts": contexts, "pairs": pairs,
            "profiles": dict(bench.profiles), "manifest": bench.manifest.to_dict()}


def _unpack(d: dict[str, Any]) -> Benchmark:
    texts, meta_keys = d["texts"], d["meta_keys"]
    messages = [Message(r, texts[c]) for r, c in d["messages"]]
    contexts = [tuple(messages[i] for i in ix) for ix in d["contexts"]]
    pairs = tuple(PreferencePair(pid, uid, ds, contexts[ci], texts[ch], texts[rj], sp,
                                 dict(zip(meta_keys[ki], mv, strict=True)))
                  for pid, uid, ds, ci, ch, rj, sp, ki, mv in d["pairs"])
    return Benchmark(pairs=pairs, profiles=d["profiles"], manifest=Manifest.from_dict(d["manifest"]))


def file_digests(paths: list[str], cache_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """sha256 of each file, remembered by (path, size, mtime_ns) in the cache folder."""
    d = _path("", cache_dir)
    index_file = d / "file-sha256.json"
    try:
        index = json.loads(index_file.read_text())
    except (OSError, ValueError):
        index = {}
    out, changed = [], False
    for p in paths:
        st = Path(p).stat()
        k = f"{Path(p).resolve()}|{st.st_size}|{st.st_mtime_ns}"
        if k not in index:
            index[k] = file_sha256(Path(p))
            changed = True
        out.append(index[k])
    if changed:
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f"file-sha256.json.tmp{os.getpid()}"
        tmp.write_text(json.dumps(index))
        os.replace(tmp, index_file)
    return out


class _PlainUnpickler(pickle.Unpickler):
    """Loads only what :func:`_pack` writes (tuples, lists, dicts, strings, numbers, None): every global
    (a class or function a pickle could name, and call) is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"a build-cache entry names {module}.{name}; entries hold plain data only")


def get(key: str, cache_dir: str | os.PathLike[str] | None = None) -> Benchmark | None:
    """The cached benchmark for ``key``, or None when there is none or the entry is not to be trusted
    (unreadable, not plain data, or pairs and profiles whose content hash differs from the manifest's)."""
    f = _path(key, cache_dir) / f"{key}.pkl"
    if not f.is_file() or f.is_symlink():
        return None
    try:
        with open(f, "rb") as fh:
            bench = _unpack(_PlainUnpickler(fh).load())
        if content_hash(bench.pairs, bench.profiles) != bench.content_hash:
            return None  # edited or corrupt: rebuilt, never trusted
        return bench
    except Exception:  # a torn or stale entry is rebuilt, never trusted
        return None


def put(key: str, bench: Benchmark, cache_dir: str | os.PathLike[str] | None = None) -> None:
    d = _path(key, cache_dir)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f"{key}.pkl.tmp{os.getpid()}"
    with open(tmp, "wb") as fh:
        pickle.dump(_pack(bench), fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, d / f"{key}.pkl")
