"""Leaderboard exports: CSV, JSON and a Markdown table (for the README)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from personalrewardbench.leaderboard.table import dataset_title

CSV_INJECTION = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> Any:
    """Spreadsheet-safe cell: text starting with a formula character gets a leading quote."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(round(value, 9))
    if isinstance(value, str) and value.startswith(CSV_INJECTION):
        return "'" + value
    return value


def to_csv(records: Sequence[Mapping[str, Any]]) -> str:
    if not records:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(records[0]), lineterminator="\n")
    writer.writeheader()
    for rec in records:
        writer.writerow({k: _csv_cell(v) for k, v in rec.items()})
    return buf.getvalue()


def to_json(records: Sequence[Mapping[str, Any]], skipped: Sequence[Mapping[str, str]]) -> str:
    doc = {"schema_version": 2, "rows": list(records), "skipped_results": list(skipped)}
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def md_escape(text: Any) -> str:
    """Text safe inside a Markdown table cell: no HTML, links, emphasis or cell breaks."""
    s = "" if text is None else str(text)
    s = re.sub(r"[\r\n\t]+", " ", s)
    return re.sub(r"([\\`*_{}\[\]()<>#+!|~])", r"\\\1", s)


def _pct(x: Any) -> str:
    return f"{100 * x:.1f}" if isinstance(x, int | float) and not isinstance(x, bool) else ""


def to_markdown(records: Sequence[Mapping[str, Any]]) -> str:
    """One Markdown table per board table, in board order: ranked, subset, then published."""
    out: list[str] = []
    tables = list(dict.fromkeys(r["table"] for r in records))
    for table in tables:
        rows = [r for r in records if r["table"] == table]
        first = rows[0]
        title = md_escape(dataset_title(first["dataset"]))
        if first["section"] == "published":
            out.append(f"### {title}: published numbers (quoted from papers, not run here)")
        else:
            what = (f"all {first['n_users']} users" if first["section"] == "ranked"
                    else f"subset of {first['n_users']} users, not ranked")
            out.append(f"### {title}, {what} (benchmark {str(first['content_hash'])[:12]})"
                       + (" (synthetic data)" if any(r["synthetic"] for r in rows) else ""))
        out.append("")
        out.append("| Rank | Method | Tier | Model | Accuracy % [95% CI] | Per-user mean % | Users / pairs / judgments "
                   "| Tokens / 1k judgments |")
        out.append("|---:|---|---|---|---|---:|---|---:|")
        for r in rows:
            if r["status"] != "ok":
                acc = "not applicable"
            else:
                acc = _pct(r["accuracy"])
                if r["accuracy_ci95_low"] is not None:
                    acc += f" [{_pct(r['accuracy_ci95_low'])}, {_pct(r['accuracy_ci95_high'])}]"
                else:
                    acc += " (no CI)"
                if r["tied_with_leader"]:
                    acc += " (tied)"
                if r["degraded"]:
                    acc += " (degraded)"
            tokens = r["tokens_per_1000_judgments"]
            counts = " / ".join("" if r[k] is None else str(r[k]) for k in ("n_users", "n_test_pairs", "n_judgments"))
            same = sum(x["method"] == r["method"] for x in rows) > 1
            method = md_escape(r["method"]) + (f" cfg {r['config_id']}" if same and r.get("config_id") else "")
            out.append(f"| {r['rank'] or ''} | {method} | {r['tier']} | {md_escape(r['base_model'] or '')} "
                       f"| {acc} | {_pct(r['user_mean_accuracy'])} | {counts} "
                       f"| {'' if tokens is None else f'{tokens:,.0f}'} |")
        out.append("")
    return "\n".join(out)
