"""Find the benchmark a finished run was made on, from its results.json alone.

``prb verify`` and the leaderboard build need the exact benchmark (same content
hash) to re-check a run's coverage and figures. :class:`BenchmarkFinder` tries,
in order, and accepts a candidate only when its content hash equals the one the
run recorded (``dataset.content_hash``):

1. the benchmark's name, when it is one the harness can load by name
   (``chatbot_arena``, ``prism``: the pinned hub revision; ``synthetic-sample``);
2. the local path the run recorded (``dataset.location.path``, written by
   ``prb evaluate --dataset PATH``), then local input paths named in the manifest's
   sources (rebuilt through the build cache);
3. the built-benchmark cache (``$PRB_CACHE_DIR/data``): every cached build whose
   content hash matches (hashes are remembered in ``$PRB_CACHE_DIR/verify-index.json``
   so each cache entry is opened once).

It reports which one it used; when none matches, the error names the recorded
path, the content hash and the ``--dataset`` option.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from personalrewardbench.data.schema import Benchmark
from personalrewardbench.results import ResultsError

PUBLISHED_SPECS = {"chatbot_arena": "chatbot_arena", "prism": "prism", "synthetic-sample": "synthetic"}
INDEX_FILE = "verify-index.json"


def dataset_location(spec: str | None) -> dict[str, Any] | None:
    """Where a benchmark was loaded from, as results.json records it: ``{"spec", "path"}``, with ``path``
    the absolute path when ``spec`` names a local file or folder, else None."""
    if not spec:
        return None
    p = Path(spec).expanduser()
    return {"spec": str(spec), "path": str(p.resolve()) if p.exists() else None}


def _short(h: str) -> str:
    return f"{h[:12]}..." if h else "(none recorded)"


def _cached_hashes(cache_dir: Path) -> dict[str, str]:
    """content hash -> cache entry file, for every readable entry of the build cache."""
    from personalrewardbench.data import cache as build_cache

    if not cache_dir.is_dir():
        return {}
    index_path = cache_dir.parent / INDEX_FILE
    try:
        index = json.loads(index_path.read_text())
        if not isinstance(index, dict):
            index = {}
    except (OSError, ValueError):
        index = {}
    out: dict[str, str] = {}
    changed = False
    for entry in sorted(cache_dir.glob("*.pkl")):
        st = entry.lstat()
        tag = f"{entry.name}|{st.st_size}|{st.st_mtime_ns}"
        if tag not in index:
            bench = build_cache.get(entry.stem, cache_dir)
            index[tag] = bench.content_hash if bench is not None else ""
            changed = True
        if index[tag]:
            out.setdefault(index[tag], entry.stem)
    if changed:
        try:
            tmp = index_path.with_name(f".{INDEX_FILE}.tmp{os.getpid()}")
            tmp.write_text(json.dumps(index, sort_keys=True))
            os.replace(tmp, index_path)
        except OSError:
            pass  # a read-only cache still works, only slower next time
    return out


class BenchmarkFinder:
    """Finds (and remembers, by content hash) the benchmark of each run; see the module doc."""

    def __init__(self, cache_dir: Path | str | None = None) -> None:
        from personalrewardbench.data.common import default_cache_dir

        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self._found: dict[str, tuple[Benchmark, str]] = {}
        self._by_spec: dict[str, Benchmark | Exception] = {}

    def _load(self, spec: str) -> Benchmark:
        from personalrewardbench.data import load_benchmark

        if spec not in self._by_spec:
            try:
                self._by_spec[spec] = load_benchmark(spec)
            except Exception as exc:  # noqa: BLE001 - every failure is one line of the final message
                self._by_spec[spec] = exc
        got = self._by_spec[spec]
        if isinstance(got, Exception):
            raise got
        return got

    def candidates(self, results: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(spec, how) pairs to try, in order (the cache comes after these)."""
        ds = results.get("dataset") if isinstance(results.get("dataset"), Mapping) else {}
        out: list[tuple[str, str]] = []
        name = str(ds.get("name") or "")
        if name in PUBLISHED_SPECS:
            out.append((PUBLISHED_SPECS[name], f"by name ({name})"))
        loc = ds.get("location") if isinstance(ds.get("location"), Mapping) else {}
        if isinstance(loc.get("path"), str):
            out.append((loc["path"], f"from the recorded path {loc['path']}"))
        manifest = ds.get("manifest") if isinstance(ds.get("manifest"), Mapping) else {}
        for src in manifest.get("sources") or []:
            path = src.get("path") if isinstance(src, Mapping) else None
            if isinstance(path, str) and path and Path(path).exists():
                out.append((path, f"rebuilt from the recorded input {path}"))
        return list(dict.fromkeys(out))

    def find(self, results: Mapping[str, Any], spec: str | None = None) -> tuple[Benchmark, str]:
        """``(benchmark, how it was found)`` for a run's results.json; with ``spec`` (``--dataset``),
        that benchmark whatever its hash (the caller reports a mismatch). Raises ResultsError."""
        if spec:
            return self._load(spec), f"--dataset {spec}"
        ds = results.get("dataset") if isinstance(results.get("dataset"), Mapping) else {}
        want = str(ds.get("content_hash") or "")
        if want in self._found:
            return self._found[want]
        tried: list[str] = []
        for cand, how in self.candidates(results):
            if Path(cand).is_dir() and (Path(cand) / "manifest.json").is_file():
                try:  # a built folder names its hash in manifest.json: skip a wrong one without loading it
                    if json.loads((Path(cand) / "manifest.json").read_text()).get("content_hash") != want:
                        tried.append(f"{how}: a different content hash")
                        continue
                except (OSError, ValueError, AttributeError):
                    pass
            try:
                bench = self._load(cand)
            except Exception as exc:  # noqa: BLE001
                tried.append(f"{how}: {str(exc).splitlines()[0][:160]}")
                continue
            if bench.content_hash == want:
                self._found[want] = (bench, how)
                return self._found[want]
            tried.append(f"{how}: content hash {_short(bench.content_hash)}, not {_short(want)}")
        key = _cached_hashes(self.cache_dir).get(want) if want else None
        if key is not None:
            from personalrewardbench.data import cache as build_cache

            bench = build_cache.get(key, self.cache_dir)
            if bench is not None and bench.content_hash == want:
                self._found[want] = (bench, f"from the build cache ({self.cache_dir / (key + '.pkl')})")
                return self._found[want]
        tried.append(f"the build cache {self.cache_dir}: no benchmark with that content hash")
        loc = ds.get("location") if isinstance(ds.get("location"), Mapping) else {}
        recorded = loc.get("path") or loc.get("spec") or "no local path"
        raise ResultsError(f"cannot find benchmark {ds.get('name')!r} with content hash {want or '(none recorded)'} "
                           f"(recorded location: {recorded}); tried " + "; ".join(tried)
                           + ". Pass --dataset PATH to the benchmark the run used (or --predictions-only)")
