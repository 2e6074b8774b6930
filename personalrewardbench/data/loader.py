"""``load_benchmark``: one entry point for every way a dataset can be named.

A spec is ``chatbot_arena`` / ``prism`` (published benchmark on the hub),
``synthetic`` (the generated sample benchmark), a raw source name
(``chatbot_arena_raw``, ``prism_raw``, ``summarize_feedback``: built from the hub
with the default settings), or a local path: a built folder (``manifest.json``),
a jsonl/parquet file or hub-repo copy (``data/*.parquet``) in the published
schema, or raw source files (recognised by their fields).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from personalrewardbench.data.build import RAW_SOURCES, build_benchmark
from personalrewardbench.data.common import first_record
from personalrewardbench.data.errors import DataError
from personalrewardbench.data.published import CORE_COLUMNS, PUBLISHED_REPOS, load_published, looks_published
from personalrewardbench.data.schema import Benchmark
from personalrewardbench.data.store import is_built_folder, load_built

SYNTHETIC_NAMES = ("synthetic", "synthetic-sample")
KNOWN_NAMES = (*PUBLISHED_REPOS, *SYNTHETIC_NAMES, *RAW_SOURCES)


def sniff_source(path: Path) -> str:
    """What a local path holds: built, published, chatbot_arena_raw, prism_raw or summarize_feedback."""
    if is_built_folder(path):
        return "built"
    if path.is_dir() and (path / "comparisons").is_dir():
        return "summarize_feedback"
    if path.is_dir() and (path / "conversations.jsonl").is_file():
        return "prism_raw"
    rec = first_record(path)
    if rec is None and path.is_dir():
        from personalrewardbench.data.records import TABULAR, unsupported_format

        tabular = sorted(p for p in path.iterdir() if p.suffix.lower() in TABULAR)
        if tabular:
            raise DataError(unsupported_format(tabular[0], str(path)))
    if rec is None:
        raise DataError(f"{path}: no records found (expected a built folder with manifest.json, "
                        "jsonl/parquet files, or a hub-repo copy with data/*.parquet).")
    if looks_published(rec):
        return "published"
    if missing := [c for c in CORE_COLUMNS if c not in rec]:
        if len(missing) < len(CORE_COLUMNS) - 2 and "user_id" in rec:
            raise DataError(f"{path}: the first record has {sorted(set(CORE_COLUMNS) - set(missing))} of the published "
                            f"schema but not {missing}. Add the missing field(s) to every row (see README, Data).")
    if "conversation_history" in rec:
        return "prism_raw"
    if "winner" in rec and "judge" in rec:
        return "chatbot_arena_raw"
    if "summaries" in rec and "worker" in rec:
        return "summarize_feedback"
    raise DataError(f"{path}: cannot tell what the records are (fields {sorted(rec)[:12]}). Use the published "
                    "schema (user_id, context, chosen, rejected, split), or build raw sources with "
                    "`prb data build --source ... --input PATH`.")


# Suffixes of the files a dataset can be read from (and of the ones refused with a hint, records.TABULAR).
DATA_SUFFIXES = (".jsonl", ".json", ".ndjson", ".parquet", ".arrow", ".gz", ".zst", ".csv", ".tsv", ".xlsx",
                 ".xls", ".ods", ".pkl")


def looks_like_path(spec: str) -> bool:
    """True when a ``--dataset`` value is meant as a path, not a dataset name: it holds a path
    separator, starts with ``.`` or ``~``, or ends in a data-file suffix (:data:`DATA_SUFFIXES`).
    A missing path is then reported as such, never matched against the dataset names."""
    seps = {"/", os.sep, os.altsep or "/"}
    return (any(c in spec for c in seps) or spec.startswith((".", "~"))
            or spec.lower().endswith(DATA_SUFFIXES))


def load_benchmark(spec: str | os.PathLike[str], *, revision: str | None = None,
                   cache_dir: str | os.PathLike[str] | None = None, survey: Any = None,
                   survey_option: bool = False) -> Benchmark:
    """Load a benchmark by name or path (see module doc). Raises DataError with a fix, worded for a
    command that took ``spec`` as ``--dataset`` (``survey_option``: the command also has ``--survey``)."""
    s = str(spec)
    path = Path(s).expanduser()
    if s in SYNTHETIC_NAMES and not path.exists():
        try:
            from personalrewardbench.data.synthetic import sample_benchmark
        except ImportError as exc:
            raise DataError("the synthetic sample benchmark is not available in this installation "
                            f"({exc}); use a published dataset or a local path.") from exc
        return sample_benchmark()
    if s in PUBLISHED_REPOS and not path.exists():
        return load_published(s, revision=revision, survey=survey)
    if s in RAW_SOURCES and not path.exists():
        with _hints_for_dataset_option(survey_option):
            return build_benchmark(s, survey=survey, cache_dir=cache_dir)
    if not path.exists():
        import difflib

        names = ", ".join(KNOWN_NAMES)
        if any(c in s for c in "*?["):
            raise DataError(f"no file or folder matches {s} (the shell passes a pattern that matches nothing "
                            "unchanged); --dataset takes one path or name per option: check the path")
        if looks_like_path(s):
            raise DataError(f"no such file or folder: {s}; check the path (or pass a dataset name: {names})")
        close = difflib.get_close_matches(s.lower(), KNOWN_NAMES, n=3, cutoff=0.6)
        if close:
            raise DataError(f"unknown dataset {s!r}; did you mean: {', '.join(close)}? (dataset names: {names}; "
                            "or a path to local files)")
        raise DataError(f"unknown dataset {s!r}: not one of {names} and no such file or folder. "
                        "Pass a dataset name or a path to local files.")
    kind = sniff_source(path)
    if kind == "built":
        return load_built(path)
    if kind == "published":
        return load_published(path, survey=survey)
    with _hints_for_dataset_option(survey_option):
        return build_benchmark(kind, input=path, survey=survey, cache_dir=cache_dir)


@contextlib.contextmanager
def _hints_for_dataset_option(survey_option: bool) -> Iterator[None]:
    """Re-word a raw source's DataError for a command that took the files as ``--dataset``: the
    sources' hints name ``prb data build``'s ``--input``, an option no other command has (the same
    files go to ``--dataset DIR``); the PRISM survey hint is dropped where the command has no ``--survey``."""
    from personalrewardbench.data.prism import SURVEY_HINT

    try:
        yield
    except DataError as exc:
        text = re.sub(r"--input\b", "--dataset", str(exc))
        if not survey_option:
            text = text.replace(SURVEY_HINT, "")
        if text == str(exc):
            raise
        raise DataError(text) from exc
