"""Leaderboard rows: one per run, ranked per dataset, ties with the leader marked; the overall view."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from personalrewardbench.leaderboard.collect import RunResult

# Published benchmarks first, then everything else by name.
DATASET_ORDER = ("chatbot_arena", "prism")
DATASET_TITLES = {
    "chatbot_arena": "Chatbot Arena",
    "prism": "PRISM",
    "summarize_feedback": "Summarize from Feedback (Stiennon et al. 2020)",
    "synthetic-sample": "Synthetic sample",
}


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
    tied: bool | None = None  # CI overlaps the leader's; None = cannot tell

    @property
    def ci(self) -> list[float] | None:
        ci = self.run.scores.get("accuracy_ci95")
        return list(ci) if ci else None

    @property
    def accuracy(self) -> float | None:
        return self.run.scores.get("accuracy") if self.run.status == "ok" else None


@dataclass
class OverallRow:
    method: str
    tier: str
    base_model: str | None
    cells: dict[str, Row] = field(default_factory=dict)  # dataset -> row
    rank: int | None = None
    mean_rank: float | None = None
    synthetic_only: bool = False  # mean_rank is over synthetic datasets only


def rank_rows(runs: Sequence[RunResult]) -> list[Row]:
    """Rows of one dataset, best first; not-applicable rows last, unranked."""
    ok = sorted((r for r in runs if r.status == "ok"), key=lambda r: (-r.scores["accuracy"], r.method, r.tier, r.base_model or ""))
    na = sorted((r for r in runs if r.status != "ok"), key=lambda r: (r.method, r.tier, r.base_model or ""))
    rows = [Row(r) for r in ok]
    prev_acc, prev_rank = None, 0
    for i, row in enumerate(rows, start=1):
        acc = row.accuracy
        row.rank = prev_rank if acc == prev_acc else i
        prev_acc, prev_rank = acc, row.rank
    if rows:
        rows[0].leader = True
        lead_ci = rows[0].ci
        for row in rows[1:]:
            ci = row.ci
            row.tied = None if not (ci and lead_ci) else ci[1] >= lead_ci[0]
    return rows + [Row(r) for r in na]


def dataset_tables(runs: Sequence[RunResult]) -> dict[str, list[Row]]:
    by_ds: dict[str, list[RunResult]] = {}
    for r in runs:
        by_ds.setdefault(r.dataset, []).append(r)
    return {ds: rank_rows(by_ds[ds]) for ds in sorted(by_ds, key=dataset_sort_key)}


def overall_rows(tables: dict[str, list[Row]]) -> list[OverallRow]:
    """One row per (method, tier, base model): its row in every dataset, ordered by mean rank.

    The mean rank is over the real (non-synthetic) datasets an entry ran on; entries that ran
    only on synthetic data are ranked by those, after all the others.
    """
    table: dict[tuple[str, str, str], OverallRow] = {}
    for ds, rows in tables.items():
        for row in rows:
            key = (row.run.method, row.run.tier, row.run.base_model or "")
            entry = table.setdefault(key, OverallRow(row.run.method, row.run.tier, row.run.base_model))
            entry.cells[ds] = row
    real = {ds for ds, rows in tables.items() if not any(r.run.synthetic for r in rows)}
    for entry in table.values():
        ranks = [c.rank for ds, c in entry.cells.items() if c.rank is not None and ds in real]
        if not ranks:  # ran on synthetic data only: ranked after everything that ran on real data
            ranks = [c.rank for c in entry.cells.values() if c.rank is not None]
            entry.synthetic_only = bool(ranks)
        entry.mean_rank = sum(ranks) / len(ranks) if ranks else None
    out = sorted(table.values(), key=lambda e: (e.mean_rank is None, e.synthetic_only, e.mean_rank or 0.0,
                                                 -len(e.cells), e.method, e.tier, e.base_model or ""))
    for i, e in enumerate(out, start=1):
        e.rank = i if e.mean_rank is not None else None
    return out


def export_record(ds: str, row: Row, method_page: str, results_link: str | None) -> dict[str, Any]:
    """A flat, JSON-safe record of one leaderboard row (for CSV/JSON/Markdown exports)."""
    r = row.run
    s, c = r.scores, r.cost
    ci = row.ci or [None, None]
    uci = s.get("user_mean_accuracy_ci95") or [None, None]
    return {
        "dataset": ds,
        "synthetic": r.synthetic,
        "rank": row.rank,
        "method": r.method,
        "tier": r.tier,
        "base_model": r.base_model,
        "status": r.status,
        "not_applicable_reason": r.not_applicable_reason,
        "accuracy": s.get("accuracy") if r.status == "ok" else None,
        "accuracy_ci95_low": ci[0],
        "accuracy_ci95_high": ci[1],
        "tied_with_leader": row.tied,
        "user_mean_accuracy": s.get("user_mean_accuracy"),
        "user_mean_accuracy_ci95_low": uci[0],
        "user_mean_accuracy_ci95_high": uci[1],
        "position_consistency": s.get("position_consistency"),
        "n_users": s.get("n_users"),
        "n_pairs": s.get("n_pairs"),
        "tokens_per_1000_judgments": c.get("tokens_per_1000_judgments"),
        "seconds_per_1000_judgments": c.get("seconds_per_1000_judgments"),
        "date": r.date,
        "run_id": r.run_id if r.tier != "reported" else None,
        "results": results_link,
        "method_page": method_page,
        "citation": r.citation,
    }
