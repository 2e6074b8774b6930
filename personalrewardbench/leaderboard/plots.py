"""Leaderboard figures (matplotlib, PNG + SVG), byte-identical across rebuilds.

Uses the object-oriented API with the Agg canvas (no pyplot, no global backend
switch), a fixed SVG hash salt, no dates or version strings in the metadata,
and text drawn as paths, so the same inputs give the same bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import matplotlib.ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from personalrewardbench.leaderboard.collect import config_id
from personalrewardbench.leaderboard.render import short_model
from personalrewardbench.leaderboard.table import Group, Row

TIER_COLORS = {"reported": "#7f7f7f", "reproduced": "#1f77b4", "submitted": "#d62728", "local": "#2ca02c"}
MARKERS = ("o", "s", "^", "D", "v", "P", "X")  # 7 against 10 colours: 70 distinct pairs
RC = {
    "svg.hashsalt": "personalrewardbench",
    "svg.fonttype": "path",
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "path.simplify": True,
}
SVG_META = {"Date": None, "Creator": "PersonalRewardBench"}
PNG_META = {"Software": None}
FIGURES = ("accuracy", "per-user", "history", "cost")
FIGURE_TITLES = {
    "accuracy": "Accuracy with 95% CI per method",
    "per-user": "Distribution of per-user accuracy",
    "history": "Accuracy against the number of a user's training pairs",
    "cost": "Accuracy against cost (seconds per 1,000 judgments)",
}


def _middle(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters in the middle, so both its start and its end stay readable."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


def label(row: Row, width: int = 44) -> str:
    """A plot label for untrusted text: the method name (cut in the middle if it must be), then as much of
    tier (unless reproduced), config tag and short model as fits; no mathtext, bounded length."""
    r = row.run
    text = _middle(r.method, width)
    extras = [f"[{r.tier}]" if r.tier != "reproduced" else "", f"cfg {config_id(r.config)[:6]}" if row.show_config
              else "", f"({short_model(r.base_model, 22)})" if r.base_model else ""]
    for extra in filter(None, extras):
        if len(text) + 1 + len(extra) > width:
            room = width - len(text) - 2
            if room >= 6:
                text += " " + extra[:room] + "…"
            break
        text += " " + extra
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text.replace("\\", "\\\\").replace("$", r"\$")


def _jitter(key: str, scale: float) -> float:
    h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") / 2**32
    return (h - 0.5) * scale


def _save(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    FigureCanvasAgg(fig)
    paths = []
    for ext, meta in (("png", PNG_META), ("svg", SVG_META)):
        path = out_dir / f"{stem}.{ext}"
        fig.savefig(path, format=ext, metadata=meta, dpi=110)
        paths.append(path)
    return paths


def _accuracy(ax, rows: Sequence[Row]) -> None:
    ok = [r for r in rows if r.accuracy is not None][::-1]
    for y, row in enumerate(ok):
        acc, ci = row.accuracy, row.ci
        err = [[acc - ci[0]], [ci[1] - acc]] if ci else None
        ax.errorbar([acc], [y], xerr=err, fmt="o", color=TIER_COLORS.get(row.run.tier, "k"), capsize=3)
    ax.set_yticks(range(len(ok)), [label(r) for r in ok])
    ax.axvline(0.5, color="#999", ls="--", lw=1)
    ax.set_xlabel("pairwise accuracy (both orders; ties count as wrong)")


def _per_user(ax, rows: Sequence[Row]) -> None:
    ok = [r for r in rows if r.accuracy is not None and r.run.per_user][::-1]
    data = [[u["accuracy"] for u in r.run.per_user.values() if u.get("accuracy") is not None] for r in ok]
    if ok:
        ax.boxplot(data, orientation="horizontal", widths=0.5, showfliers=False)
        for y, (row, vals) in enumerate(zip(ok, data, strict=True), start=1):
            uids = [u for u, v in row.run.per_user.items() if v.get("accuracy") is not None]
            ys = [y + _jitter(row.run.method + uid, 0.3) for uid in uids]
            ax.scatter(vals, ys, s=8, alpha=0.5, color=TIER_COLORS.get(row.run.tier, "k"))
        ax.set_yticks(range(1, len(ok) + 1), [label(r) for r in ok])
    ax.axvline(0.5, color="#999", ls="--", lw=1)
    ax.set_xlabel("accuracy of one user's test pairs")


def history_points(row: Row) -> list[tuple[int, float, float]]:
    """(n_train, mean accuracy of the users with that many train pairs, users) for one row."""
    buckets: dict[int, list[float]] = {}
    for u in row.run.per_user.values():
        if u.get("accuracy") is not None and u.get("n_train") is not None:
            buckets.setdefault(int(u["n_train"]), []).append(float(u["accuracy"]))
    return [(n, sum(v) / len(v), len(v)) for n, v in sorted(buckets.items())]


def _legend(ax) -> None:
    """The legend outside the axes, to the right: labels never cover data or each other."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, borderaxespad=0.0)


def _history(ax, rows: Sequence[Row]) -> None:
    cmap = matplotlib.colormaps["tab10"]
    ok = [r for r in rows if r.accuracy is not None and r.run.per_user]
    for i, row in enumerate(ok):
        pts = history_points(row)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=MARKERS[i % len(MARKERS)], ms=3, lw=1,
                    color=cmap(i % 10), label=label(row))
    ax.axhline(0.5, color="#999", ls="--", lw=1)
    ax.set_xlabel("training pairs of the user")
    ax.set_ylabel("mean accuracy of those users")
    _legend(ax)


def _cost(ax, rows: Sequence[Row]) -> None:
    cmap = matplotlib.colormaps["tab10"]
    ok = [r for r in rows if r.accuracy is not None and r.run.cost.get("seconds_per_1000_judgments") is not None]
    for i, row in enumerate(ok):
        x = max(float(row.run.cost["seconds_per_1000_judgments"]), 1e-3)
        ci = row.ci
        err = [[row.accuracy - ci[0]], [ci[1] - row.accuracy]] if ci else None
        ax.errorbar([x], [row.accuracy], yerr=err, fmt=MARKERS[i % len(MARKERS)], color=cmap(i % 10), capsize=2,
                    label=label(row, 36))
    xs = [max(float(r.run.cost["seconds_per_1000_judgments"]), 1e-3) for r in ok]
    wide = bool(xs) and max(xs) / min(xs) >= 10
    if wide:  # a log scale only where costs span a decade or more; labels as plain numbers
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _pos: f"{x:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.axhline(0.5, color="#999", ls="--", lw=1)
    ax.set_xlabel("seconds per 1,000 judgments" + (" (log scale)" if wide else ""))
    ax.set_ylabel("accuracy")
    _legend(ax)


DRAW = {"accuracy": _accuracy, "per-user": _per_user, "history": _history, "cost": _cost}


def figure_kinds(group: Group) -> list[str]:
    """The figures one table has data for (none for a table of numbers quoted from papers)."""
    ok = [r for r in group.rows if r.accuracy is not None]
    n_train = {u.get("n_train") for r in ok for u in r.run.per_user.values() if u.get("accuracy") is not None}
    has = {"accuracy": bool(ok), "per-user": any(r.run.per_user for r in ok), "history": len(n_train) > 1,
           "cost": any(r.run.cost.get("seconds_per_1000_judgments") is not None for r in ok)}
    return [k for k in FIGURES if has[k]]


def draw_figure(group: Group, kind: str) -> Figure:
    """One figure of a table, laid out (constrained layout; legends outside the axes)."""
    n = max(1, sum(1 for r in group.rows if r.accuracy is not None))
    tall = kind in ("accuracy", "per-user")
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(7.0, 1.4 + 0.3 * n) if tall else (7.0, max(3.6, 1.6 + 0.16 * n)), layout="constrained")
        ax = fig.add_subplot()
        DRAW[kind](ax, group.rows)
        ax.set_title(FIGURE_TITLES[kind], fontsize=10, loc="left")
        FigureCanvasAgg(fig).draw()
    return fig


def dataset_figures(group: Group, out_dir: Path) -> dict[str, str]:
    """Draw the figures of one table that have data into ``out_dir``; returns {figure: file stem}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stems: dict[str, str] = {}
    for kind in figure_kinds(group):
        stem = f"{group.group_id}-{kind}"
        with matplotlib.rc_context(RC):
            _save(draw_figure(group, kind), out_dir, stem)
        stems[kind] = stem
    return stems
