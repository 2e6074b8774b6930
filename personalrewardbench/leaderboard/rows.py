"""Rendering of board rows and tables: cells with intervals, tie marks and badges; one section per table;
the overall view. Shared by the front page and the method pages."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

from personalrewardbench.leaderboard.collect import RunResult, config_id
from personalrewardbench.leaderboard.plots import FIGURE_TITLES, FIGURES, history_points
from personalrewardbench.leaderboard.render import (
    CI_KIND_SHORT,
    ci_text,
    esc,
    model_cell,
    num,
    pct,
    safe_url,
    td,
)
from personalrewardbench.leaderboard.table import VERSION_RULE, Group, OverallRow, Row, dataset_title, slug

TIER_HELP = {
    "reproduced": "a baseline from baselines/, run and sealed by the harness, verified here",
    "submitted": "a community submission, scored in the sandbox by CI and sealed with the CI key, verified here",
    "local": "a run of another method made with this machine's seal key (not a baseline, not scored by CI)",
    "reported": "a number quoted from a paper; not run here",
}
SOURCE_PATH = re.compile(r"^(baselines|submissions)/[A-Za-z0-9._-]+/?$")


def submission_href(run: RunResult, repo_url: str | None) -> tuple[str | None, str]:
    """(href or None, text) for a run's method folder: a repository link or an http(s) source."""
    src = run.source or ""
    if repo_url and SOURCE_PATH.match(src) and safe_url(repo_url):
        return f"{repo_url.rstrip('/')}/tree/HEAD/{src.rstrip('/')}", src
    if safe_url(src):
        return src, "source"
    return None, src


def method_href(run: RunResult, root: str = "") -> str:
    return f"{root}methods/{slug(run.method)}.html"


def method_cell(row: Row, root: str = "") -> str:
    r = row.run
    out = f'<a class="method" href="{method_href(r, root)}#run-{row.row_id}">{esc(r.method)}</a>'
    if row.show_config:
        out += (f' <span class="cfg" title="{esc(json.dumps(r.config, sort_keys=True, default=str)[:600])}">'
                f"cfg {esc(config_id(r.config))}</span>")
    if r.degradation:
        out += (f' <a class="badge degraded" href="{method_href(r, root)}#run-{row.row_id}" '
                f'title="{esc("; ".join(r.degradation))}">degraded</a>')
    return out


def ci_html(scores: Mapping, name: str, kind: str | None = None) -> str:
    """The interval of figure ``name`` with its kind when not the bootstrap; 'no CI' with the reason."""
    ci = scores.get(name)
    kind = kind or (scores.get("ci_kind") or {}).get(name)
    reason = ((scores.get("ci_detail") or {}).get(name) or {}).get("reason") or ""
    if not ci:
        return f' <span class="ci none" title="{esc(reason or "no interval")}">no CI</span>'
    tag = CI_KIND_SHORT.get(kind or "")
    tag_html = f' <abbr class="kind" title="{esc(reason or kind)}">{esc(tag)}</abbr>' if tag else ""
    return f' <span class="ci">{ci_text(ci)}</span>{tag_html}'


def tie_mark(row: Row) -> str:
    if row.leader:
        return ' <span class="mark lead" title="highest accuracy in this table">leader</span>'
    cmp = row.vs_leader
    if row.tied and cmp:
        return (f' <span class="mark tied" title="statistically tied with the leader: paired sign test on the same '
                f'pairs, p = {cmp["p_value"]:.3g}; difference {100 * cmp["difference"]:+.1f} points">≈&nbsp;tied</span>')
    if row.tied:
        return ' <span class="mark tied" title="95% intervals of the same kind overlap">≈&nbsp;tied</span>'
    if row.note:
        short = "≠&nbsp;kind" if "not directly comparable" in row.note else "?"
        return f' <span class="mark other" title="{esc(row.note)}">{short}</span>'
    return ""


def _missing(run: RunResult) -> str:
    return '<span class="na">not reported</span>' if run.tier == "reported" else '<span class="na">—</span>'


def _value(run: RunResult, shown: str, value: object) -> str:
    return td(shown, value, cls="num") if shown else td(_missing(run), None)


def counts_cell(run: RunResult) -> str:
    s = run.scores
    users = len(run.users)
    text = f"{users} · {s.get('n_pairs', '—')} · {s.get('n_judgments', '—')}"
    title = f"{users} user{'s' if users != 1 else ''}, {s.get('n_pairs')} test pairs, {s.get('n_judgments')} judgments"
    if run.shard:
        title += f"; shard {run.shard}"
    return td(f'<span title="{esc(title)}">{esc(text)}</span>', users, cls="num")


def dataset_row(row: Row, results_href: str | None, repo_url: str | None) -> str:
    r, s, c = row.run, row.run.scores, row.run.cost
    classes = ["leader" if row.leader else "", "tied" if row.tied else "", "na-row" if r.status != "ok" else "",
               "degraded" if r.degradation else ""]
    if r.status == "ok":
        acc = f"<strong>{pct(s['accuracy'])}</strong>" + ci_html(s, "accuracy_ci95", row.ci_kind) + tie_mark(row)
        acc_cell = td(acc, s["accuracy"], cls="num acc")
    else:
        reason = r.not_applicable_reason or "the method cannot run on this dataset"
        acc_cell = td(f'<span class="na" title="{esc(reason)}">not applicable</span>', None, cls="na-cell")
    um = s.get("user_mean_accuracy")
    um_shown = (pct(um) + ci_html(s, "user_mean_accuracy_ci95")) if um is not None else ""
    cells = [
        td(str(row.rank) if row.rank is not None else "", row.rank, cls="num"),
        td(method_cell(row), r.method),
        td(f'<span class="tier {esc(r.tier)}" title="{esc(TIER_HELP.get(r.tier, ""))}">{esc(r.tier)}</span>', r.tier),
        td(model_cell(r.base_model, r.llm_identity), r.base_model or ""),
        acc_cell,
        _value(r, um_shown, um),
        _value(r, pct(s.get("position_consistency")), s.get("position_consistency")),
        counts_cell(r),
        _value(r, num(c.get("tokens_per_1000_judgments")), c.get("tokens_per_1000_judgments")),
        _value(r, num(c.get("seconds_per_1000_judgments")), c.get("seconds_per_1000_judgments")),
    ]
    cls = " ".join(x for x in classes if x)
    return f'<tr data-tier="{esc(r.tier)}"' + (f' class="{cls}"' if cls else "") + ">" + "".join(cells) + "</tr>"


DATASET_HEAD = (
    ("Rank", "num"), ("Method", "text"), ("Tier", "text"), ("Model", "text", "hover for the full model identity"),
    ("Accuracy % [95% CI]", "num", "pooled over all judgments; interval over pairs"),
    ("Per-user mean % [95% CI]", "num", "mean of per-user accuracies; interval over users"),
    ("Consistency %", "num", "position consistency: pairs whose two judgments (both orders) agree"),
    ("Users · pairs · judgments", "num", "users evaluated, test pairs, judgments (each pair in both orders)"),
    ("Tokens / 1k judgm.", "num", "LLM tokens per 1,000 judgments"),
    ("Seconds / 1k judgm.", "num", "wall-clock seconds per 1,000 judgments"),
)


def thead(head: Sequence[tuple]) -> str:
    """``head``: (label, "num" | "text" | None[, hover text]) per column; None marks an unsortable column."""
    cells = []
    for h, t, *tip in head:
        attrs = f' data-type="{t}"' if t else ' class="nosort"'
        if tip:
            attrs += f' title="{esc(tip[0])}"'
        cells.append(f'<th scope="col"{attrs}>{esc(h)}</th>')
    return f"<thead><tr>{''.join(cells)}</tr></thead>"


def group_title(g: Group) -> str:
    return f"{dataset_title(g.dataset)}"


def group_meta(g: Group) -> str:
    """What every row of the table has in common (nothing else)."""
    n, total = len(g.users), g.benchmark_users
    pairs = g.n_test_pairs
    pairs_text = f", {pairs} test pairs judged in both orders ({2 * pairs} judgments per run)" if pairs else ""
    if not g.subset:
        return (f"Every row evaluated all {n} users of this benchmark version{pairs_text}. Ranked by pooled "
                "accuracy; <em>≈ tied</em>: not distinguishable from the leader by a paired sign test on the same "
                "pairs (p ≥ 0.05).")
    shard = f" (shard {', '.join(g.shards)}; join shards with <code>prb merge</code>)" if g.shards else ""
    ranked = sum(r.rank is not None for r in g.rows) > 1
    return (f"Every row evaluated the same {n} of the benchmark's {total} users{shard}{pairs_text}. "
            + ("Ranked among these runs only (the same users; ≈ tied as above), never against the full runs."
               if ranked else "Not ranked, and never compared with the full runs above."))


def group_section(g: Group, figures: Mapping[str, str], hrefs: Mapping[tuple, str | None], repo_url: str | None,
                  level: int = 2) -> str:
    h = f"h{level}"
    badge = ' <span class="badge synthetic">synthetic data</span>' if g.synthetic else ""
    users = (f" · all {len(g.users)} users" if not g.subset else f" · {len(g.users)} of {g.benchmark_users} users")
    out = [f'<section id="{esc(g.group_id)}" class="dataset{" subset" if g.subset else ""}">',
           f"<{h}>{esc(group_title(g))}{esc(users)} <code title=\"benchmark content hash\">{esc(g.content_hash[:12])}"
           f"</code>{badge}</{h}>"]
    if g.synthetic and not g.subset:
        out.append('<p class="warn">Synthetic data: generated users with planted preferences, for checking the '
                   "pipeline without hub access. Its numbers say nothing about real users.</p>")
    out.append(f'<p class="meta">{group_meta(g)}</p>')
    body = "".join(dataset_row(r, hrefs.get(r.run.key), repo_url) for r in g.rows)
    out.append(f'<div class="scroll"><table class="board sortable" id="table-{esc(g.group_id)}">'
               f"<caption>{esc(group_title(g))}{esc(users)}: one row per method and setup, best first</caption>"
               f"{thead(DATASET_HEAD)}<tbody>{body}</tbody></table></div>")
    figs = []
    for kind in FIGURES:
        stem = figures.get(kind)
        if stem:
            figs.append(f'<figure><a href="plots/{esc(stem)}.svg"><img src="plots/{esc(stem)}.png" '
                        f'alt="{esc(FIGURE_TITLES[kind])}, {esc(g.dataset)}"></a>'
                        f'<figcaption>{esc(FIGURE_TITLES[kind])} (<a href="plots/{esc(stem)}.svg">SVG</a>)'
                        "</figcaption></figure>")
    if figs:
        out.append('<div class="figures">' + "".join(figs) + "</div>")
    if figs:
        out.append(_history_data(g.rows))
    out.append("</section>")
    return "\n".join(out)


def _history_data(rows: Sequence[Row]) -> str:
    lines = []
    for row in rows:
        for n, acc, users in history_points(row):
            lines.append(f"<tr><td>{esc(row.run.method)}</td><td>{esc(row.run.tier)}</td><td data-v=\"{n}\">{n}</td>"
                         f"<td>{pct(acc)}</td><td>{users}</td></tr>")
    if not lines:
        return ""
    return ('<details class="figdata"><summary>Data behind the sample-efficiency figure</summary>'
            '<table class="sortable"><thead><tr><th data-type="text">Method</th><th data-type="text">Tier</th>'
            '<th data-type="num">Training pairs</th><th data-type="num">Mean accuracy %</th>'
            '<th data-type="num">Users</th></tr></thead><tbody>' + "".join(lines) + "</tbody></table></details>")


def overall_section(entries: Sequence[OverallRow], groups: Sequence[Group]) -> str:
    head = [("Rank", "num"), ("Method", "text"), ("Tier", "text"), ("Model", "text")]
    head += [(f"{dataset_title(g.dataset)} {g.content_hash[:6]} %", "num") for g in groups] + [("Mean rank", "num")]
    body = []
    for e in entries:
        any_row = next(iter(e.cells.values()))
        cells = [td(str(e.rank) if e.rank else "", e.rank, cls="num"), td(method_cell(any_row), e.method),
                 td(f'<span class="tier {esc(e.tier)}">{esc(e.tier)}</span>', e.tier),
                 td(model_cell(e.base_model, any_row.run.llm_identity), e.base_model or "")]
        for g in groups:
            row = e.cells.get(g.group_id)
            if row is None:
                cells.append(td('<span class="na">not run</span>', None))
            elif row.accuracy is None:
                cells.append(td('<span class="na">n/a</span>', None, title=row.run.not_applicable_reason))
            else:
                mark = " ≈" if row.tied else (" ★" if row.leader else "")
                cells.append(td(f"{pct(row.accuracy)}{mark}", row.accuracy, cls="num"))
        shown = '<span class="na">n/a</span>' if e.mean_rank is None else f"{e.mean_rank:.2f}" + (
            ' <span class="badge synthetic">synthetic only</span>' if e.synthetic_only else "")
        cells.append(td(shown, e.mean_rank, cls="num"))
        body.append(f'<tr data-tier="{esc(e.tier)}">' + "".join(cells) + "</tr>")
    return ('<section id="overall"><h2>Overall</h2><p class="meta">Each entry\'s accuracy in every ranked table (★ '
            "leader, ≈ tied with it), ordered by mean rank over the real benchmarks it ran on; entries run only on "
            f"synthetic data come after. One table per benchmark: {esc(VERSION_RULE)}.</p>"
            '<div class="scroll"><table class="board sortable" id="table-overall"><caption>All ranked tables</caption>'
            + thead(head) + "<tbody>" + "".join(body) + "</tbody></table></div></section>")
