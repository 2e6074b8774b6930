"""Benchmark assembly (validate, count, hash, manifest) and the built-folder format.

A built folder holds ``manifest.json`` (Manifest.to_dict()), ``pairs.jsonl``
(PreferencePair.to_dict() per line, sorted by pair_id) and ``profiles.json``
({user_id: profile|null}). Loading a folder re-checks the content hash, so a
hand-edited folder is caught.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from personalrewardbench.data.errors import DataError
from personalrewardbench.data.records import iter_records
from personalrewardbench.data.schema import SPLITS, Benchmark, Manifest, PreferencePair, content_hash
from personalrewardbench.data.text import NON_FINITE_NUMBER, Findings
from personalrewardbench.data.validate import Locate, validate_pairs


def package_version() -> str:
    from personalrewardbench import __version__

    return str(__version__)


def count_pairs(pairs: Iterable[PreferencePair]) -> dict[str, Any]:
    """Users and pairs, overall, per split and per dataset (each with per-split counts)."""
    users: dict[str, set[str]] = defaultdict(set)
    n: Counter[str] = Counter()
    for p in pairs:
        for key in ("all", f"split:{p.split}", f"ds:{p.dataset}", f"ds:{p.dataset}:{p.split}"):
            users[key].add(p.user_id)
            n[key] += 1

    def block(prefix: str) -> dict[str, Any]:
        return {s: {"users": len(users[f"{prefix}{s}"]), "pairs": n[f"{prefix}{s}"]} for s in SPLITS}

    datasets = sorted({k.split(":")[1] for k in n if k.startswith("ds:")})
    return {
        "users": len(users["all"]),
        "pairs": n["all"],
        "splits": block("split:"),
        "datasets": {
            d: {"users": len(users[f"ds:{d}"]), "pairs": n[f"ds:{d}"], "splits": block(f"ds:{d}:")} for d in datasets
        },
    }


def finite_numbers(
    pairs: Sequence[PreferencePair],
    profiles: Mapping[str, Mapping[str, Any] | None] | None,
    *,
    locate: Locate | None,
    findings: Findings,
) -> tuple[Sequence[PreferencePair], Mapping[str, Mapping[str, Any] | None] | None]:
    """``pairs`` and ``profiles`` with NaN/Infinity in meta and profile fields replaced by None (JSON
    has no NaN: a pandas column with a missing value would make pairs.jsonl non-standard JSON), each
    counted as ``non_finite_number`` with its row and field."""
    where = locate or (lambda i: f"pair #{i}")
    out = list(pairs)
    for i, p in enumerate(out):
        meta = findings.finite(p.meta, where(i), "meta")
        if meta is not p.meta:
            out[i] = replace(p, meta=meta)
    if profiles is not None:
        profiles = {u: (findings.finite(v, f"profile of user {u!r}") if v is not None else None)
                    for u, v in profiles.items()}
    return out, profiles


def make_benchmark(
    pairs: Sequence[PreferencePair],
    profiles: Mapping[str, Mapping[str, Any] | None] | None,
    *,
    name: str,
    sources: Sequence[Mapping[str, Any]],
    filters: Mapping[str, Any] | None = None,
    seed: int = 0,
    synthetic: bool = False,
    warnings: Mapping[str, int] | None = None,
    locate: Locate | None = None,
    findings: Findings | None = None,
    official: bool = False,
) -> Benchmark:
    """Validate ``pairs`` and wrap them with a manifest. Every user gets a profile entry
    (None where ``profiles`` has none).

    ``warnings`` (counts) and ``findings`` (counts with locations: repaired text, quirks found
    while reading) are added to the validation's own warnings. ``official``: a published
    benchmark as released, whose content quirks are warnings (see validate).
    """
    notes = Findings()
    if findings is not None:
        notes.update(findings.counts, findings.locations)
    pairs, profiles = finite_numbers(pairs, profiles, locate=locate, findings=notes)
    validate_pairs(pairs, profiles, name=name, locate=locate, official=official, findings=notes)
    ordered = tuple(sorted(pairs, key=lambda p: p.pair_id))
    table = profiles or {}
    profs = {u: (dict(table[u]) if table.get(u) is not None else None) for u in sorted({p.user_id for p in ordered})}
    all_warnings = Counter(dict(warnings or {}))
    all_warnings.update(notes.counts)
    manifest = Manifest(
        name=name,
        sources=tuple(dict(s) for s in sources),
        filters=dict(filters or {}),
        seed=int(seed),
        counts=count_pairs(ordered),
        content_hash=content_hash(ordered, profs),
        warnings={k: v for k, v in sorted(all_warnings.items()) if v},
        synthetic=synthetic,
        package_version=package_version(),
        warning_locations=notes.where(),
        official=official,
    )
    return Benchmark(pairs=ordered, profiles=profs, manifest=manifest)


def _write_atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_benchmark(bench: Benchmark, out_dir: str | os.PathLike[str]) -> Path:
    """Write the built-folder format; the manifest is written last (its presence marks a
    complete folder)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)

    def write_pairs(f: Any) -> None:
        for p in sorted(bench.pairs, key=lambda p: p.pair_id):
            f.write(standard_json(p.to_dict(), bench.name, f"pair {p.pair_id!r}", sort_keys=True))
            f.write("\n")

    _write_atomic(out / "pairs.jsonl", write_pairs)
    _write_atomic(out / "profiles.json",
                  lambda f: f.write(standard_json({k: bench.profiles[k] for k in sorted(bench.profiles)}, bench.name,
                                                  "profiles", indent=1, sort_keys=True)))
    _write_atomic(out / "manifest.json",
                  lambda f: json.dump(bench.manifest.to_dict(), f, ensure_ascii=False, indent=2, sort_keys=True))
    return out


def standard_json(value: Any, name: str, what: str, **kw: Any) -> str:
    """``json.dumps(value, ensure_ascii=False, allow_nan=False, **kw)``: standard JSON or one DataError.
    Benchmarks made by this version hold no NaN (:func:`finite_numbers`); a folder built before may."""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, **kw)
    except ValueError as exc:
        raise DataError(f"{name}: {what} holds NaN or Infinity, which standard JSON cannot hold ({exc}). Rebuild "
                        f"the benchmark from its source with this version (`prb data build` / load the source "
                        f"again), which writes them as null and counts them ({NON_FINITE_NUMBER}).") from exc


def is_built_folder(path: Path) -> bool:
    return path.is_dir() and (path / "manifest.json").is_file()


def load_built(path: str | os.PathLike[str]) -> Benchmark:
    """Read a built folder back; the content hash must match the manifest. The manifest's counts are
    recomputed from pairs.jsonl where they differ (derived figures: a hand-written or older manifest
    may lack them)."""
    folder = Path(path)
    try:
        manifest_d = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        manifest = Manifest.from_dict(manifest_d)
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{folder}: manifest.json is missing or unreadable ({exc}). Rebuild with `prb data build`.") \
            from exc
    name = manifest.name
    pairs: list[PreferencePair] = []
    pairs_file = folder / "pairs.jsonl"
    if not pairs_file.is_file():
        raise DataError(f"{name}: {pairs_file} is missing. Rebuild with `prb data build`.")
    repaired = Findings()  # a hand-edited folder may hold broken text; its hash check then fails below
    for where, rec in iter_records(pairs_file, dataset=name, findings=repaired):
        try:
            pairs.append(PreferencePair.from_dict(rec))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{name}: {where}: unreadable pair ({exc!r}). Fix the line or rebuild with "
                            "`prb data build`.") from exc
    try:
        profiles = json.loads((folder / "profiles.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        profiles = {}
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise DataError(f"{name}: profiles.json is not valid UTF-8 JSON ({exc}). Rebuild with `prb data build`.") from exc
    if not isinstance(profiles, dict):
        raise DataError(f"{name}: profiles.json must be an object {{user_id: profile}}. Rebuild with `prb data build`.")
    validate_pairs(pairs, None, name=name, locate=lambda i: f"pairs.jsonl pair {i + 1}", official=manifest.official)
    profs = {u: profiles.get(u) for u in sorted({p.user_id for p in pairs})}
    got = content_hash(pairs, profs)
    if got != manifest.content_hash:
        raise DataError(
            f"{name}: {folder}: the content hash of pairs.jsonl/profiles.json ({got[:12]}) does not match "
            f"manifest.json ({manifest.content_hash[:12]}); the files were changed after the build. "
            "Rebuild with `prb data build` (or `prb data export`) instead of editing files by hand."
        )
    if dict(manifest.counts) != (counts := count_pairs(pairs)):  # derived from pairs.jsonl, which the hash covers
        manifest = replace(manifest, counts=counts)
    return Benchmark(pairs=tuple(sorted(pairs, key=lambda p: p.pair_id)), profiles=profs, manifest=manifest)
