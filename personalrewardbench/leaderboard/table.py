"""The comparability rule: which runs share a ranked table, how rows are ranked and when they are tied.

- One ranked table per benchmark version (content hash) holds the runs that evaluated
  every user of it. Runs on a subset (``--users N``, an unmerged shard) go to their own
  table per user set, in a marked section, never ranked against full runs and never
  replacing one; runs on the very same subset are ranked among themselves.
- Different configs or models of one method are different rows; among identical runs the
  one with the lowest seed, then the first folder in path order, is shown
  (:func:`~personalrewardbench.leaderboard.collect.select_identical`).
- "Tied with the leader" between our runs comes from the paired comparison on the same
  pairs (``prb compare``): the two-sided exact sign test over pairs, tied when p >= 0.05.
- The Overall table averages ranks over one ranked table per benchmark name: when a
  benchmark has tables for several versions, only its current version counts
  (:func:`current_versions`); the older versions keep their own tables.
- Published (reported) rows have no predictions and no content hash: they get their own
  table per dataset. Their intervals are converted to 95% from the stated kind (a standard
  error x 1.96) and compared only with intervals of the same kind; where kinds differ the
  row is marked "not directly comparable".
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from personalrewardbench.leaderboard.collect import RunResult, config_id, user_set_id
from personalrewardbench.scoring import paired_comparison

# Published benchmarks first, then everything else by name.
DATASET_ORDER = ("chatbot_arena", "prism")
DATASET_TITLES = {
    "chatbot_arena": "Chatbot Arena",
    "prism": "PRISM",
    "summarize_feedback": "Summarize from Feedback (Stiennon et al. 2020)",
    "synthetic-sample": "Synthetic sample",
}
TIE_ALPHA = 0.05
TIE_RESAMPLES = 1000
KIND_TEXT = {"ci95": "a published 95% CI", "se": "a standard error (x 1.96)"}


def dataset_sort_key(name: str) -> tuple[int, str]:
    return (DATASET_ORDER.index(name), name) if name in DATASET_ORDER else (len(DATASET_ORDER), name)


def dataset_title(name: str) -> str:
    return DATASET_TITLES.get(name, name)


def slug(text: str) -> str:
    """A file-name-safe, collision-free slug for untrusted text."""
    clean = re.sub(r"[^a-z0-9_.-]+", "-", text.lower()).lstrip(".-")[:60].rstrip(".-") or "x"
    if clean != text:
        clean += "-" + hashlib.sha256(text.encode()).hexdigest()[:8]
    return clean


@dataclass
class Row:
    run: RunResult
    rank: int | None = None
    leader: bool = False
    tied: bool | None = None  # statistically tied with the leader; None = cannot tell
    vs_leader: dict[str, Any] | None = None  # paired comparison with the leader (our runs)
    note: str = ""  # why there is no tie mark, or why rows are not directly comparable
    show_config: bool = False  # another row of the table has the same method name

    @property
    def ci(self) -> list[float] | None:
        ci = self.run.scores.get("accuracy_ci95")
        return list(ci) if ci else None

    @property
    def ci_kind(self) -> str | None:
        if self.run.tier == "reported":
            return f"reported-{self.run.uncertainty_kind}" if self.run.uncertainty_kind else None
        return (self.run.scores.get("ci_kind") or {}).get("accuracy_ci95")

    @property
    def accuracy(self) -> float | None:
        return self.run.scores.get("accuracy") if self.run.status == "ok" else None

    @property
    def row_id(self) -> str:
        return hashlib.sha256("\0".join(self.run.key).encode()).hexdigest()[:10]


@dataclass
class Group:
    """One table: runs on the same benchmark version and user set (or the reported rows of a dataset)."""

    dataset: str
    content_hash: str
    users: tuple[str, ...]
    benchmark_users: int | None
    rows: list[Row] = field(default_factory=list)
    subset: bool = False
    reported: bool = False

    @property
    def synthetic(self) -> bool:
        return any(r.run.synthetic for r in self.rows)

    @property
    def group_id(self) -> str:
        if self.reported:
            return f"published-{slug(self.dataset)}"
        tail = f"-subset-{user_set_id(self.users)}" if self.subset else ""
        return f"{slug(self.dataset)}-{self.content_hash[:8]}{tail}"

    @property
    def shards(self) -> list[str]:
        return sorted({r.run.shard for r in self.rows if r.run.shard})

    @property
    def n_test_pairs(self) -> int | None:
        for r in self.rows:
            n = (r.run.raw.get("dataset") or {}).get("n_test_pairs")
            if isinstance(n, int):
                return n
        return None


@dataclass
class OverallRow:
    method: str
    tier: str
    base_model: str | None
    config: str
    cells: dict[str, Row] = field(default_factory=dict)  # group id -> row
    rank: int | None = None
    mean_rank: float | None = None
    synthetic_only: bool = False


@dataclass
class Board:
    groups: list[Group]  # ranked: every user of a benchmark version
    subsets: list[Group]  # subset runs, one table per user set
    reported: list[Group]  # published numbers, one table per dataset
    overall: list[OverallRow]
    overall_groups: list[Group] = field(default_factory=list)  # the tables Overall ranks over (current versions)


def _order(rows: list[Row]) -> tuple[list[Row], list[Row]]:
    ok = sorted((r for r in rows if r.accuracy is not None),
                key=lambda r: (-r.accuracy, r.run.method, r.run.tier, r.run.base_model or "", config_id(r.run.config)))
    na = sorted((r for r in rows if r.accuracy is None), key=lambda r: (r.run.method, r.run.tier))
    return ok, na


def _mark_configs(rows: list[Row]) -> None:
    names = [r.run.method for r in rows]
    for r in rows:
        r.show_config = names.count(r.run.method) > 1


def rank_group(rows: list[Row]) -> list[Row]:
    """Rows of one full-user table, best first, ranked; ties with the leader from the paired sign test."""
    ok, na = _order(rows)
    prev_acc, prev_rank = None, 0
    for i, row in enumerate(ok, start=1):
        row.rank = prev_rank if row.accuracy == prev_acc else i
        prev_acc, prev_rank = row.accuracy, row.rank
    if ok:
        lead = ok[0]
        lead.leader = True
        for row in ok[1:]:
            try:
                cmp = paired_comparison(lead.run.predictions, row.run.predictions, resamples=TIE_RESAMPLES, seed=0)
            except ValueError as exc:
                row.note = f"no paired comparison with the leader: {exc}"
                continue
            row.vs_leader = cmp
            row.tied = cmp["p_value"] >= TIE_ALPHA
    out = ok + na
    _mark_configs(out)
    return out


def rank_reported(rows: list[Row]) -> list[Row]:
    """Published rows of one dataset: ranked by accuracy; a tie mark only between intervals of one kind."""
    ok, _ = _order(rows)
    for i, row in enumerate(ok, start=1):
        row.rank = i
    if ok:
        lead = ok[0]
        lead.leader = True
        for row in ok[1:]:
            a, b = row.run.uncertainty_kind, lead.run.uncertainty_kind
            if not (row.ci and lead.ci):
                row.note = "no interval published" if not row.ci else "the leader has no published interval"
            elif a != b:
                row.note = (f"not directly comparable with the leader: {KIND_TEXT.get(a or '', a)} against "
                            f"{KIND_TEXT.get(b or '', b)}")
            else:
                row.tied = row.ci[1] >= lead.ci[0]
    _mark_configs(ok)
    return ok


def build_board(runs: Sequence[RunResult]) -> Board:
    """Sort runs into ranked tables, subset tables and published tables (see the module doc)."""
    full: dict[tuple[str, str], Group] = {}
    subsets: dict[tuple[str, str, str], Group] = {}
    reported: dict[str, Group] = {}
    for run in runs:
        if run.tier == "reported":
            reported.setdefault(run.dataset, Group(run.dataset, "", (), None, reported=True)).rows.append(Row(run))
        elif run.full:
            g = full.setdefault((run.dataset, run.content_hash),
                                Group(run.dataset, run.content_hash, run.users, run.benchmark_users))
            g.rows.append(Row(run))
        else:
            key = (run.dataset, run.content_hash, user_set_id(run.users))
            g = subsets.setdefault(key, Group(run.dataset, run.content_hash, run.users, run.benchmark_users,
                                              subset=True))
            g.rows.append(Row(run))
    groups = [full[k] for k in sorted(full, key=lambda k: (dataset_sort_key(k[0]), k[1]))]
    for g in groups:
        g.rows = rank_group(g.rows)
    subs = [subsets[k] for k in sorted(subsets, key=lambda k: (dataset_sort_key(k[0]), k[1], -len(subsets[k].users),
                                                                  k[2]))]
    for g in subs:  # ranked among themselves only (same users), and only when there is something to rank
        ok, na = _order(g.rows)
        if len(ok) > 1:
            g.rows = rank_group(g.rows)
        else:
            g.rows = ok + na
            _mark_configs(g.rows)
    reps = [reported[k] for k in sorted(reported, key=dataset_sort_key)]
    for g in reps:
        g.rows = rank_reported(g.rows)
    current = current_versions(groups)
    return Board(groups, subs, reps, overall_rows(current) if len(current) > 1 else [], current)


VERSION_RULE = ("when a benchmark has ranked tables for several versions (content hashes), only its current version "
                "counts: the version the harness loads by that name today (chatbot_arena, prism, synthetic-sample), "
                "else the version still found where its runs recorded it was loaded from, else the version with "
                "the most rows; dates are never used; older versions keep their own tables")


def _currency(g: Group) -> int:
    """2: found by name (what the harness loads for the name now); 1: found where the runs recorded loading it
    (the path, or the input files it was built from, still hold this version); 0: only in the build cache."""
    hows = [r.run.how_verified for r in g.rows]
    if any(h.startswith("by name (") for h in hows):
        return 2
    return int(any(h.startswith(("from the recorded path", "rebuilt from the recorded input")) for h in hows))


def current_versions(groups: Sequence[Group]) -> list[Group]:
    """One ranked table per benchmark name, in the order of ``groups`` (see :data:`VERSION_RULE`).

    How each run's benchmark was found (:class:`~personalrewardbench.benchmark_lookup.BenchmarkFinder`)
    says which version a name or a path holds today; among equals the table with more rows, then the
    smaller content hash wins, so the choice depends neither on dates nor on file order.
    """
    by_name: dict[str, list[Group]] = {}
    for g in groups:
        by_name.setdefault(g.dataset, []).append(g)
    # max() keeps the first of equal keys: sorting by content hash first makes the choice independent of file order
    chosen = {id(max(sorted(gs, key=lambda g: g.content_hash), key=lambda g: (_currency(g), len(g.rows))))
              for gs in by_name.values()}
    return [g for g in groups if id(g) in chosen]


def overall_rows(groups: Sequence[Group]) -> list[OverallRow]:
    """One row per (method, tier, model, config) over the ranked tables ``groups`` (one per benchmark name:
    :func:`current_versions`), ordered by mean rank over the real (non-synthetic) benchmarks it ran on;
    entries that ran only on synthetic data come after."""
    table: dict[tuple[str, str, str, str], OverallRow] = {}
    for g in groups:
        for row in g.rows:
            r = row.run
            key = (r.method, r.tier, r.base_model or "", config_id(r.config))
            entry = table.setdefault(key, OverallRow(r.method, r.tier, r.base_model, key[3]))
            entry.cells[g.group_id] = row
    real = {g.group_id for g in groups if not g.synthetic}
    for entry in table.values():
        ranks = [c.rank for gid, c in entry.cells.items() if c.rank is not None and gid in real]
        if not ranks:
            ranks = [c.rank for c in entry.cells.values() if c.rank is not None]
            entry.synthetic_only = bool(ranks)
        entry.mean_rank = sum(ranks) / len(ranks) if ranks else None
    out = sorted(table.values(), key=lambda e: (e.mean_rank is None, e.synthetic_only, e.mean_rank or 0.0,
                                                 -len(e.cells), e.method, e.tier, e.base_model or "", e.config))
    for i, e in enumerate(out, start=1):
        e.rank = i if e.mean_rank is not None else None
    return out


def export_record(group: Group, row: Row, method_page: str, results_link: str | None) -> dict[str, Any]:
    """A flat, JSON-safe record of one leaderboard row (for CSV/JSON/Markdown exports)."""
    r = row.run
    s, c = r.scores, r.cost
    ci = row.ci or [None, None]
    uci = s.get("user_mean_accuracy_ci95") or [None, None]
    ref = s.get("user_mean_accuracy_ci95_reference") or [None, None]
    section = "published" if group.reported else "subset" if group.subset else "ranked"
    return {
        "dataset": group.dataset,
        "content_hash": group.content_hash or None,
        "section": section,
        "table": group.group_id,
        "synthetic": r.synthetic,
        "rank": row.rank,
        "method": r.method,
        "config_id": config_id(r.config) if r.tier != "reported" else None,
        "tier": r.tier,
        "base_model": r.base_model,
        "llm_identity": r.llm_identity,
        "status": r.status,
        "not_applicable_reason": r.not_applicable_reason,
        "accuracy": s.get("accuracy") if r.status == "ok" else None,
        "accuracy_ci95_low": ci[0],
        "accuracy_ci95_high": ci[1],
        "ci_kind": row.ci_kind,
        "tied_with_leader": row.tied,
        "tie_p_value": row.vs_leader["p_value"] if row.vs_leader else None,
        "comparability_note": row.note or None,
        "user_mean_accuracy": s.get("user_mean_accuracy"),
        "user_mean_accuracy_ci95_low": uci[0],
        "user_mean_accuracy_ci95_high": uci[1],
        "reference_ci95_low": ref[0],
        "reference_ci95_high": ref[1],
        "position_consistency": s.get("position_consistency"),
        "n_users": len(r.users) if r.tier != "reported" else None,
        "n_test_pairs": s.get("n_pairs"),
        "n_judgments": s.get("n_judgments"),
        "shard": r.shard,
        "degraded": "; ".join(r.degradation) or None,
        "tokens_per_1000_judgments": c.get("tokens_per_1000_judgments"),
        "seconds_per_1000_judgments": c.get("seconds_per_1000_judgments"),
        "date": r.date,
        "run_id": r.run_id if r.tier != "reported" else None,
        "results": results_link,
        "method_page": method_page,
        "citation": r.citation,
        "uncertainty_kind": r.uncertainty_kind,
    }
