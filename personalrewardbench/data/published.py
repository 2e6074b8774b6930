"""PersonalRewardBench as published: ``MichaelR207/*_personalized_0125`` rows -> Benchmark.

Row schema (confirmed against the SynthesizeMe reference loader and its PRISM
example): ``user_id``, ``conversation_id``, ``context`` (list of {role,
content}), ``chosen`` / ``rejected`` ({role: "model", content}), ``split``
(train/val/test, the per-user split), ``flip``, ``turns``, ``type``, plus
chosen_score, rejected_score, dataset, agreement and per-judge reasoning /
prediction columns. The hub splits are named train/validation/test; like the
reference loader we concatenate them and select by the row's ``split`` column;
a row whose hub split disagrees is kept under its ``split`` column and counted.
Every column other than the five core ones is kept in ``PreferencePair.meta``.

The hub dataset, or a local copy of the hub repo (``DIR/data/<split>-NNNNN-of-MMMMM.parquet`` for
all three splits, every shard present: :func:`hub_layout_problem`), is the *official* benchmark: its content quirks (split disagreement, identical or empty
responses, test pairs repeating train/val pairs, serialized responses) are warnings with
locations in the manifest, never a refusal. A jsonl/parquet file in the same schema is
user-supplied data, where those are errors.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from personalrewardbench.data.common import (
    bool_field,
    file_sha256,
    iter_records,
    messages_from,
    record_files,
    response_pair,
    stable_hash,
    user_id_from,
)
from personalrewardbench.data.errors import DataError
from personalrewardbench.data.hub import load_hub_dataset
from personalrewardbench.data.order import assign_source_positions
from personalrewardbench.data.records import iter_hub_rows
from personalrewardbench.data.schema import Benchmark, PreferencePair
from personalrewardbench.data.store import make_benchmark
from personalrewardbench.data.text import (
    HUB_LAYOUT_NOT_OFFICIAL,
    SPLIT_DISAGREEMENT,
    SPLIT_VALUE_NORMALIZED,
    Findings,
)

PUBLISHED_REPOS = {
    "chatbot_arena": "MichaelR207/chatbot_arena_personalized_0125",
    "prism": "MichaelR207/prism_personalized_0125",
}
# The commit sha of the _0125 repos could not be looked up from this workplace (no hub
# access; no public record of it was found), so the pin is the branch name. Pass
# `revision=` / `--revision` with a commit sha to pin exactly; the manifest records it.
PUBLISHED_REVISION = os.environ.get("PRB_PUBLISHED_REVISION", "main")
HUB_SPLIT_TO_ROW_SPLIT = {"train": "train", "validation": "val", "test": "test"}
ROW_SPLIT_ALIASES = {"train": "train", "val": "val", "validation": "val", "valid": "val", "dev": "val",
                     "test": "test"}
HUB_FILE = re.compile(r"^(train|validation|test)-\d{5}-of-\d{5}\.")  # data/<split>-00000-of-00001.parquet
HUB_SHARD = re.compile(r"^(train|validation|test)-(\d{5})-of-(\d{5})\.parquet$")
CORE_COLUMNS = ("user_id", "context", "chosen", "rejected", "split")


def _local_hint(name: str) -> str:
    repo = PUBLISHED_REPOS.get(name, "MichaelR207/<dataset>_personalized_0125")
    return (f"download a copy (`hf download --repo-type dataset {repo} --local-dir DIR`) and pass "
            "`--dataset DIR` (its data/*.parquet), or a jsonl/parquet file in the published schema, "
            "or `--dataset synthetic` for the generated sample benchmark.")


def looks_published(rec: Mapping[str, Any]) -> bool:
    return all(c in rec for c in CORE_COLUMNS)


def _sanitize(value: Any) -> Any:
    try:
        json.dumps(value, allow_nan=True)
        return value
    except (TypeError, ValueError):
        return json.loads(json.dumps(value, default=str))


def pair_from_row(row: Mapping[str, Any], *, name: str, where: str, quirks: Findings | None = None,
                  notes: Findings | None = None) -> PreferencePair:
    """One published-schema row as a PreferencePair (pair_id assigned later).

    Shape accidents (a string context, chosen and rejected of different types or roles) raise
    DataError naming the row and field; with ``quirks`` (the official benchmark) they are counted
    there and the row is read as published. ``notes`` counts split values read through an alias
    or after stripping/lower-casing (``" Test"``, ``"validation"``): ``split_value_normalized``.
    A user id that is not a string or integer, or a ``flip`` that is not a boolean, raises DataError.
    """
    missing = [c for c in CORE_COLUMNS if c not in row or row[c] is None]
    if missing:
        raise DataError(f"{name}: {where}: missing field(s) {missing}; a published-schema row needs "
                        f"{list(CORE_COLUMNS)}. Fix or drop the row.")
    raw_split = row["split"]
    split = ROW_SPLIT_ALIASES.get(str(raw_split).strip().lower())
    if split is None:
        raise DataError(f"{name}: {where}: field 'split' is {raw_split!r}; use train, val or test.")
    if raw_split != split and notes is not None:
        notes.warn(SPLIT_VALUE_NORMALIZED, f"{where}: field 'split' is {raw_split!r}, read as {split!r}")
    user_id = user_id_from(row["user_id"], dataset=name, where=where)
    bool_field(row, "flip", dataset=name, where=where)
    meta = {k: _sanitize(v) for k, v in row.items() if k not in CORE_COLUMNS}
    context = messages_from(row["context"], dataset=name, where=where, field="context", findings=quirks)
    chosen, rejected = response_pair(row["chosen"], row["rejected"], dataset=name, where=where, findings=quirks)
    return PreferencePair(
        pair_id="",
        user_id=user_id,
        dataset=name,
        context=context,
        chosen=chosen,
        rejected=rejected,
        split=split,  # type: ignore[arg-type]
        meta=meta,
    )


def _assign_ids(pairs: list[PreferencePair]) -> list[PreferencePair]:
    """pair_id = <conversation_id or user_id>:<12 hex of the content>; exact repeats get #2, #3..."""
    out, seen = [], {}
    for p in pairs:
        h = stable_hash(p.user_id, *(f"{m.role}:{m.content}" for m in p.context), p.chosen, p.rejected, n=12)
        conv = p.meta.get("conversation_id")
        base = f"{conv if conv not in (None, '') else p.user_id}:{h}"
        k = seen.get(base, 0) + 1
        seen[base] = k
        pid = base if k == 1 else f"{base}#{k}"
        out.append(PreferencePair(pid, p.user_id, p.dataset, p.context, p.chosen, p.rejected, p.split, p.meta))
    return out


def benchmark_from_rows(
    rows: Iterable[Mapping[str, Any]],
    *,
    name: str,
    sources: Sequence[Mapping[str, Any]],
    profiles: Mapping[str, Mapping[str, Any] | None] | None = None,
    synthetic: bool = False,
    locations: Sequence[str] | None = None,
    filters: Mapping[str, Any] | None = None,
    warnings: Mapping[str, int] | None = None,
    findings: Findings | None = None,
    official: bool = False,
) -> Benchmark:
    """Rows in the exact published hub schema -> a validated Benchmark with manifest.

    ``locations`` (parallel to rows, e.g. "test-00000.parquet row 12") name rows in errors.
    ``findings``: what reading the rows found (repaired text, split disagreements), carried
    into the manifest. ``official``: the published benchmark as released (module doc).
    """
    notes = Findings()
    if findings is not None:
        notes.update(findings.counts, findings.locations)
    pairs = []
    for i, row in enumerate(rows):
        where = locations[i] if locations is not None else f"row {i}"
        pairs.append(pair_from_row(row, name=name, where=where, quirks=notes if official else None, notes=notes))
    pairs = assign_source_positions(_assign_ids(pairs))  # row order = the user's source order
    locs = {p.pair_id: (locations[i] if locations is not None else f"row {i}") for i, p in enumerate(pairs)}
    ordered = sorted(pairs, key=lambda p: p.pair_id)
    return make_benchmark(ordered, profiles, name=name, sources=sources, filters=filters or {"split": "published"},
                          seed=0, synthetic=synthetic, warnings=warnings, findings=notes, official=official,
                          locate=lambda i: locs.get(ordered[i].pair_id, f"row {i}"))


def _check_hub_split(row: Mapping[str, Any], hub_split: str | None, *, where: str, findings: Findings) -> None:
    """Count a row whose ``split`` column disagrees with the hub split it was published in (the
    column wins, as in the reference loader)."""
    if hub_split is None or hub_split not in HUB_SPLIT_TO_ROW_SPLIT:
        return
    want = HUB_SPLIT_TO_ROW_SPLIT[hub_split]
    got = ROW_SPLIT_ALIASES.get(str(row.get("split", "")).strip().lower())
    if got != want:
        findings.warn(SPLIT_DISAGREEMENT, f"{where}: field 'split' is {row.get('split')!r} but the row is in hub "
                                          f"split {hub_split!r} (used as {got or row.get('split')!r})")


def hub_layout_problem(path: Path) -> str | None:
    """Why ``path`` is not a local copy of a published hub repo, or None when it is one.

    A copy (what ``hf download --repo-type dataset MichaelR207/<name> --local-dir DIR`` writes) is a
    folder whose ``data/`` holds the parquet split files ``<split>-NNNNN-of-MMMMM.parquet`` of all
    three hub splits (train, validation, test), every shard 0..MMMMM-1 of each split present, and
    nothing else; the repo's README.md (dataset card) may or may not have been downloaded. A file
    named like a split file on its own, or a folder holding some of them, is user data.
    """
    if not path.is_dir() or not (path / "data").is_dir():
        return "not a folder with data/ (a copy of the hub repo holds data/<split>-NNNNN-of-MMMMM.parquet)"
    files = record_files(path)
    if not files or any(f.parent != path / "data" for f in files):
        return "its split files are not directly in data/"
    shards: dict[str, set[tuple[int, int]]] = {}
    for f in files:
        m = HUB_SHARD.match(f.name)
        if m is None:
            return f"{f.name} is not a hub split file (<split>-NNNNN-of-MMMMM.parquet)"
        shards.setdefault(m.group(1), set()).add((int(m.group(2)), int(m.group(3))))
    if missing := [s for s in HUB_SPLIT_TO_ROW_SPLIT if s not in shards]:
        return f"data/ has no {'/'.join(missing)} split file (the hub repo has train, validation and test)"
    for split, got in shards.items():
        totals = {n for _, n in got}
        if len(totals) != 1 or {i for i, _ in got} != set(range(next(iter(totals)))):
            return f"the {split} shards in data/ are incomplete or inconsistent ({sorted(got)})"
    return None


def rows_from_local(path: Path, *, name: str, findings: Findings | None = None
                    ) -> tuple[list[dict[str, Any]], list[str], list[dict[str, Any]]]:
    """Rows, their locations and source records of a local published-schema file or hub-repo copy.
    Repaired text and split disagreements are counted in ``findings``."""
    findings = findings if findings is not None else Findings()
    rows, locs, sources = [], [], []
    files = record_files(path)
    if not files:
        raise DataError(f"{name}: {path} holds no .jsonl/.json/.parquet files (nor data/*.parquet). "
                        "Point --dataset at the files in the published schema.")
    extra = [f.name for f in files if not HUB_FILE.match(f.name)]
    if extra and len(extra) < len(files):
        raise DataError(f"{name}: {path}: {extra[:5]} sit next to the hub split files "
                        f"{[f.name for f in files if HUB_FILE.match(f.name)][:5]}; a copy of the published repo holds "
                        "only <train|validation|test>-NNNNN-of-NNNNN files. Move the other file(s) out, or load them "
                        "on their own.")
    for f in files:
        m = HUB_FILE.match(f.name)
        hub_split = m.group(1) if m else None
        for where, rec in iter_records(f, dataset=name, findings=findings):
            if not rows and not looks_published(rec):
                raise DataError(f"{name}: {where}: not in the published schema (needs {list(CORE_COLUMNS)}; "
                                f"found {sorted(rec)[:12]}). For raw sources use `prb data build --source ...`.")
            _check_hub_split(rec, hub_split, where=where, findings=findings)
            rows.append(rec)
            locs.append(where)
        sources.append({"id": str(f), "kind": "published-local", "path": str(f), "revision": None,
                        "sha256": file_sha256(f)})
    return rows, locs, sources


def rows_from_hub(name: str, revision: str | None = None, findings: Findings | None = None
                  ) -> tuple[list[dict[str, Any]], list[str], dict[str, Any]]:
    findings = findings if findings is not None else Findings()
    repo = PUBLISHED_REPOS[name]
    rev = revision or PUBLISHED_REVISION
    dsd = load_hub_dataset(repo, revision=rev, local_hint=_local_hint(name))
    rows, locs = [], []
    unknown = [s for s in dsd if s not in HUB_SPLIT_TO_ROW_SPLIT]
    if unknown:
        raise DataError(f"{name}: hub repo {repo}@{rev} has unexpected splits {unknown}; expected "
                        f"{list(HUB_SPLIT_TO_ROW_SPLIT)}. Pin a known revision with --revision.")
    for hub_split in HUB_SPLIT_TO_ROW_SPLIT:
        if hub_split not in dsd:
            continue
        for where, rec in iter_hub_rows(dsd[hub_split], f"{repo} split {hub_split}", findings, dataset=name):
            _check_hub_split(rec, hub_split, where=where, findings=findings)
            rows.append(rec)
            locs.append(where)
    return rows, locs, {"id": repo, "kind": "published-hub", "revision": rev, "path": None}


def published_name_for(path: Path) -> str:
    """chatbot_arena / prism for local copies of the published repos, else the file stem."""
    stem = path.name if path.is_dir() else path.stem
    for name, repo in PUBLISHED_REPOS.items():
        if stem == repo.split("/")[1] or stem == name:
            return name
    return stem


def load_published(spec: str | os.PathLike[str], *, revision: str | None = None, survey: Any = None,
                   name: str | None = None) -> Benchmark:
    """The published benchmark from the hub (``"chatbot_arena"``/``"prism"``) or a local copy.

    PRISM users get profiles by joining the PRISM survey on user_id: ``survey`` is a
    path (survey.jsonl/parquet or a prism-alignment copy), ``"hub"``, or None (hub for
    the hub dataset; none for local copies, counted as a warning).
    """
    from personalrewardbench.data.prism import load_survey

    findings = Findings()
    if isinstance(spec, str) and spec in PUBLISHED_REPOS:
        ds_name = name or spec
        rows, locs, src = rows_from_hub(spec, revision, findings)
        sources, official = [src], True
        if spec == "prism" and survey is None:
            survey = "hub"
    else:
        path = Path(spec)
        ds_name = name or published_name_for(path)
        rows, locs, sources = rows_from_local(path, name=ds_name, findings=findings)
        problem = hub_layout_problem(path)
        official = problem is None
        if problem and any(HUB_FILE.match(f.name) for f in record_files(path)):
            findings.warn(HUB_LAYOUT_NOT_OFFICIAL, f"{path}: named like the hub's split files but read as user data, "
                                                   f"not the official benchmark: {problem}")
    profiles = None
    if survey is not None and str(survey) == "none":
        survey = None
    elif survey is not None:
        profiles, survey_src = load_survey(survey, findings)
        sources.append(survey_src)
    if survey is None and ds_name == "prism":
        findings.warn("prism_without_survey", "no PRISM survey given: users have no profile")
    return benchmark_from_rows(rows, name=ds_name, sources=sources, profiles=profiles, locations=locs,
                               findings=findings, official=official)
