"""Build a benchmark from a raw source: read records -> pairs -> filters -> seeded
per-user split -> profiles -> validated Benchmark, cached on disk by the hash of
inputs + settings.

Sources: ``chatbot_arena_raw``, ``prism_raw``, ``summarize_feedback``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from personalrewardbench.data import cache
from personalrewardbench.data.arena import ArenaSettings, battle_records, pair_from_battle
from personalrewardbench.data.errors import DataError
from personalrewardbench.data.order import assign_source_positions
from personalrewardbench.data.prism import (
    PrismSettings,
    conversation_records,
    default_survey_for,
    load_survey,
    pairs_from_conversation,
    survey_source,
)
from personalrewardbench.data.schema import Benchmark, PreferencePair
from personalrewardbench.data.splits import SplitSettings, split_users
from personalrewardbench.data.store import make_benchmark
from personalrewardbench.data.summarize import comparison_records, pair_from_comparison
from personalrewardbench.data.text import Findings, normalize_text
from personalrewardbench.data.validate import check_user_id_variants, pair_content_key

RAW_SOURCES = ("chatbot_arena_raw", "prism_raw", "summarize_feedback")


def _collect(source: str, records: Iterable[tuple[str, Mapping[str, Any]]], arena: ArenaSettings,
             prism: PrismSettings, counts: Counter[str], progress: bool
             ) -> tuple[list[PreferencePair], dict[str, str], dict[str, str]]:
    pairs: list[PreferencePair] = []
    group_of: dict[str, str] = {}
    first_seen: dict[str, str] = {}
    for where, rec in tqdm(records, desc=f"reading {source}", unit=" records", disable=None if progress else True):
        counts["records_read"] += 1
        if source == "prism_raw":
            got = pairs_from_conversation(rec, where, prism, counts)
        else:
            one = pair_from_battle(rec, where, arena, counts) if source == "chatbot_arena_raw" \
                else pair_from_comparison(rec, where, counts)
            got = [one] if one is not None else []
        for pair, group in got:
            if not all(normalize_text(m.content) for m in pair.context):  # an empty turn or system prompt
                counts["empty_context_message_dropped"] += 1
                continue
            if pair.pair_id in first_seen:
                if source == "summarize_feedback":  # the same labeler judged the same two summaries again
                    counts["repeated_judgments_dropped"] += 1
                    continue
                raise DataError(f"{source}: {where}: pair id {pair.pair_id!r} repeats {first_seen[pair.pair_id]}; "
                                "the input holds the same record twice. Remove the duplicate.")
            first_seen[pair.pair_id] = where
            group_of[pair.pair_id] = f"{pair.user_id}\x1f{group}"
            pairs.append(pair)
    return pairs, group_of, first_seen


@dataclass
class BuildPlan:
    """Everything a build needs, with its cache key computed (inputs hashed), nothing read yet."""

    source: str
    key: str
    sources: list[dict[str, Any]]
    filters: dict[str, Any]
    records: Iterable[tuple[str, Mapping[str, Any]]]
    survey_spec: Any
    split: SplitSettings
    arena: ArenaSettings
    prism: PrismSettings
    cacheable: bool
    findings: Findings  # filled while the records are read: repaired text, with locations


def _drop_repeated_content(pairs: list[PreferencePair], counts: Counter[str]) -> list[PreferencePair]:
    """Keep one pair (smallest pair_id) per user + context + two responses, so a repeated
    battle/comparison can never sit in both train and test."""
    seen: set[str] = set()
    kept = []
    for p in sorted(pairs, key=lambda p: p.pair_id):
        k = pair_content_key(p)
        if k in seen:
            counts["repeated_pair_content_dropped"] += 1
            continue
        seen.add(k)
        kept.append(p)
    return kept


def plan_build(
    source: str,
    *,
    input: str | os.PathLike[str] | None = None,
    survey: str | os.PathLike[str] | None = None,
    split: SplitSettings | None = None,
    arena: ArenaSettings | None = None,
    prism: PrismSettings | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> BuildPlan:
    """Resolve inputs and settings to a BuildPlan (see :func:`build_benchmark`)."""
    if source not in RAW_SOURCES:
        raise DataError(f"unknown source {source!r}; choose one of {list(RAW_SOURCES)}.")
    split = split or SplitSettings()
    arena = arena or ArenaSettings()
    prism = prism or PrismSettings()
    in_path = Path(input) if input is not None else None
    if in_path is not None and not in_path.exists():
        raise DataError(f"{source}: input not found: {in_path}. Check the --input path.")
    findings = Findings()
    if source == "chatbot_arena_raw":
        records, src = battle_records(in_path, findings)
        settings: dict[str, Any] = arena.to_dict()
    elif source == "prism_raw":
        records, src = conversation_records(in_path, findings)
        settings = prism.to_dict()
    else:
        records, src = comparison_records(in_path, findings)
        settings = {}
    sources = [src]
    survey_spec: Any = None
    if source == "prism_raw":
        survey_spec = default_survey_for(in_path) if survey is None else (None if str(survey) == "none" else survey)
        if survey_spec is not None:
            sources.append(survey_source(survey_spec)[1])
    for s in sources:  # local inputs are identified by content
        if s.get("kind") == "local":
            s["sha256"] = cache.file_digests(s["path"], cache_dir)
    filters = {**settings, **split.to_dict()}
    cacheable = use_cache and all(s.get("kind") == "local" or len(str(s.get("revision") or "")) == 40
                                  for s in sources)
    return BuildPlan(source=source, key=cache.build_key(source, sources, filters), sources=sources, filters=filters,
                     records=records, survey_spec=survey_spec, split=split, arena=arena, prism=prism,
                     cacheable=cacheable, findings=findings)


def run_plan(plan: BuildPlan, *, cache_dir: str | os.PathLike[str] | None = None,
             progress: bool = False) -> Benchmark:
    """Fetch the plan's benchmark from the cache, or build and cache it."""
    if plan.cacheable and (hit := cache.get(plan.key, cache_dir)) is not None:
        return hit
    counts: Counter[str] = Counter()
    pairs, group_of, where_of = _collect(plan.source, plan.records, plan.arena, plan.prism, counts, progress)
    check_user_id_variants({p.user_id for p in pairs}, plan.source, official=False, found=Findings())
    pairs = assign_source_positions(pairs, plan.source)  # read order / timestamps, before any re-sorting
    pairs = _drop_repeated_content(pairs, counts)
    kept, dropped = split_users(pairs, group_of, plan.split)
    counts.update(dropped)
    profiles = load_survey(plan.survey_spec, plan.findings)[0] if plan.survey_spec is not None else None
    warnings = {k: v for k, v in counts.items() if k != "records_read"}
    bench = make_benchmark(kept, profiles, name=plan.source, sources=plan.sources,
                           filters={**plan.filters, "records_read": counts["records_read"]}, seed=plan.split.seed,
                           warnings=warnings, findings=plan.findings,
                           locate=lambda i: where_of.get(kept[i].pair_id, f"pair #{i}"))
    if plan.cacheable:
        cache.put(plan.key, bench, cache_dir)
    return bench


def build_benchmark(
    source: str,
    *,
    input: str | os.PathLike[str] | None = None,
    survey: str | os.PathLike[str] | None = None,
    split: SplitSettings | None = None,
    arena: ArenaSettings | None = None,
    prism: PrismSettings | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    progress: bool = False,
) -> Benchmark:
    """Build (or fetch from the cache) the benchmark of a raw source.

    ``input`` is a local path (file, folder, or hub-repo copy); None reads the hub
    with `datasets` at the pinned revision. ``survey`` (prism_raw only): a path,
    "hub", or "none"; by default survey.jsonl next to the conversations, or the hub.
    Hub builds are cached only when every revision is a full commit sha.
    """
    plan = plan_build(source, input=input, survey=survey, split=split, arena=arena, prism=prism,
                      cache_dir=cache_dir, use_cache=use_cache)
    return run_plan(plan, cache_dir=cache_dir, progress=progress)
