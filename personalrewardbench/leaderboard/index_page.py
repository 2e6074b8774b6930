"""The leaderboard's front page: the overall view, one table and four figures per dataset."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from personalrewardbench.leaderboard.collect import RunResult, Skipped
from personalrewardbench.leaderboard.plots import FIGURE_TITLES, FIGURES, history_points
from personalrewardbench.leaderboard.render import NA, ci_text, esc, link, num, page, pct, safe_url, td
from personalrewardbench.leaderboard.table import OverallRow, Row, dataset_title, slug

TIER_HELP = {
    "reported": "number quoted from a paper; not rerun here",
    "reproduced": "run by this project from the code in baselines/",
    "submitted": "community submission, scored by CI in a sandbox",
}
SOURCE_PATH = re.compile(r"^(baselines|submissions)/[A-Za-z0-9._-]+/?$")


def submission_href(run: RunResult, repo_url: str | None) -> tuple[str | None, str]:
    """(href or None, text) for a run's submission: a repository folder link or an http(s) source."""
    src = run.source or ""
    if repo_url and SOURCE_PATH.match(src) and safe_url(repo_url):
        return f"{repo_url.rstrip('/')}/tree/HEAD/{src.rstrip('/')}", src
    if safe_url(src):
        return src, "source"
    return None, src


def method_cell(run: RunResult, root: str = "") -> str:
    badge = ' <span class="badge synthetic">synthetic data</span>' if run.synthetic else ""
    return f'<a href="{root}methods/{slug(run.method)}.html">{esc(run.method)}</a>{badge}'


def _missing(run: RunResult) -> str:
    if run.status != "ok":
        return f'<span class="na">{NA}</span>'
    return '<span class="na">not reported</span>' if run.tier == "reported" else '<span class="na">—</span>'


def _value(run: RunResult, shown: str, value: object, title: str | None = None) -> str:
    return td(shown, value, title=title) if shown else td(_missing(run), None)


def dataset_row(row: Row, results_href: str | None, repo_url: str | None) -> str:
    r, s, c = row.run, row.run.scores, row.run.cost
    classes = ["leader" if row.leader else "", "tied" if row.tied else "", "na-row" if r.status != "ok" else ""]
    mark = ""
    if row.leader:
        mark = ' <span class="mark" title="highest accuracy">leader</span>'
    elif row.tied:
        mark = ' <span class="mark" title="95% CI overlaps the leader\'s: statistically tied">tied</span>'
    if r.status == "ok":
        ci = row.ci
        acc = f"<strong>{pct(s['accuracy'])}</strong>" + (f' <span class="ci">{ci_text(ci)}</span>' if ci else "")
        acc_cell = td(acc + mark, s["accuracy"])
    else:
        reason = r.not_applicable_reason or "the method cannot run on this dataset"
        acc_cell = td(f'<span class="na">not applicable</span>: {esc(reason)}', None, cls="na-cell")
    um = s.get("user_mean_accuracy")
    um_ci = s.get("user_mean_accuracy_ci95")
    um_shown = (f"{pct(um)}" + (f' <span class="ci">{ci_text(um_ci)}</span>' if um_ci else "")) if um is not None else ""
    links = []
    if results_href:
        links.append(f'<a href="{esc(results_href)}">results</a>')
    href, text = submission_href(r, repo_url)
    if href:
        links.append(link(href, "submission"))
    elif text:
        links.append(f'<span title="{esc(text)}">{esc(text)}</span>')
    if r.citation:
        links.append(f'<span class="cite">{link(r.citation_url, r.citation)}</span>')
    cells = [
        td(str(row.rank) if row.rank is not None else "", row.rank),
        td(method_cell(r), r.method),
        td(f'<span class="tier {esc(r.tier)}" title="{esc(TIER_HELP.get(r.tier, ""))}">{esc(r.tier)}</span>', r.tier),
        td(esc(r.base_model) if r.base_model else '<span class="na">none</span>', r.base_model or ""),
        acc_cell,
        _value(r, um_shown, um),
        _value(r, pct(s.get("position_consistency")), s.get("position_consistency")),
        _value(r, num(c.get("tokens_per_1000_judgments")), c.get("tokens_per_1000_judgments")),
        _value(r, num(c.get("seconds_per_1000_judgments")), c.get("seconds_per_1000_judgments")),
        td(esc(r.date) if r.date else '<span class="na">—</span>', r.date or ""),
        td(" · ".join(links), None),
    ]
    cls = " ".join(x for x in classes if x)
    return f'<tr data-tier="{esc(r.tier)}"' + (f' class="{cls}"' if cls else "") + ">" + "".join(cells) + "</tr>"


DATASET_HEAD = (
    ("Rank", "num"), ("Method", "text"), ("Tier", "text"), ("Base model", "text"),
    ("Accuracy % [95% CI]", "num"), ("Per-user mean % [95% CI]", "num"), ("Position consistency %", "num"),
    ("Tokens / 1k judgments", "num"), ("Seconds / 1k judgments", "num"), ("Date", "text"), ("Links", None),
)


def _thead(head: Sequence[tuple[str, str | None]]) -> str:
    cells = "".join('<th scope="col"' + (f' data-type="{t}"' if t else ' class="nosort"') + f">{esc(h)}</th>"
                    for h, t in head)
    return f"<thead><tr>{cells}</tr></thead>"


def dataset_section(ds: str, rows: Sequence[Row], figures: Mapping[str, str], hrefs: Mapping[tuple, str | None],
                    repo_url: str | None) -> str:
    synthetic = any(r.run.synthetic for r in rows)
    out = [f'<section id="ds-{esc(slug(ds))}" class="dataset">',
           f"<h2>{esc(dataset_title(ds))} <code>{esc(ds)}</code>"
           + (' <span class="badge synthetic">synthetic</span>' if synthetic else "") + "</h2>"]
    if synthetic:
        out.append('<p class="warn">This dataset is <strong>synthetic</strong>: generated users with planted '
                   "preferences, for checking the pipeline without hub access. Its numbers say nothing about real "
                   "users.</p>")
    first = next((r for r in rows if r.run.scores.get("n_users")), None)
    if first:
        s = first.run.scores
        out.append(f'<p class="meta">{esc(s.get("n_users"))} users, {esc(s.get("n_pairs"))} test pairs, '
                   f"{esc(s.get('n_judgments'))} judgments per method.</p>")
    body = "".join(dataset_row(r, hrefs.get(r.run.key), repo_url) for r in rows)
    out.append(f'<div class="scroll"><table class="board sortable" id="table-{esc(slug(ds))}">'
               f"<caption>{esc(dataset_title(ds))}: one row per method, best first</caption>"
               f"{_thead(DATASET_HEAD)}<tbody>{body}</tbody></table></div>")
    figs = []
    for kind in FIGURES:
        stem = figures.get(kind)
        if stem:
            figs.append(f'<figure><a href="plots/{esc(stem)}.svg"><img src="plots/{esc(stem)}.png" '
                        f'alt="{esc(FIGURE_TITLES[kind])}, {esc(ds)}"></a>'
                        f'<figcaption>{esc(FIGURE_TITLES[kind])} (<a href="plots/{esc(stem)}.svg">SVG</a>)'
                        "</figcaption></figure>")
    out.append('<div class="figures">' + "".join(figs) + "</div>")
    out.append(_history_data(rows))
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


def overall_section(entries: Sequence[OverallRow], datasets: Sequence[str]) -> str:
    head = [("Rank", "num"), ("Method", "text"), ("Tier", "text"), ("Base model", "text")]
    head += [(dataset_title(ds) + " %", "num") for ds in datasets] + [("Mean rank", "num")]
    body = []
    for e in entries:
        cells = [td(str(e.rank) if e.rank else "", e.rank),
                 td(f'<a href="methods/{slug(e.method)}.html">{esc(e.method)}</a>', e.method),
                 td(f'<span class="tier {esc(e.tier)}">{esc(e.tier)}</span>', e.tier),
                 td(esc(e.base_model) if e.base_model else '<span class="na">none</span>', e.base_model or "")]
        for ds in datasets:
            row = e.cells.get(ds)
            if row is None:
                cells.append(td('<span class="na">not run</span>', None))
            elif row.accuracy is None:
                cells.append(td('<span class="na">not applicable</span>', None, title=row.run.not_applicable_reason))
            else:
                mark = " ≈" if row.tied else (" ★" if row.leader else "")
                cells.append(td(f"{pct(row.accuracy)} <span class=\"ci\">{ci_text(row.ci)}</span>{mark}",
                                row.accuracy))
        shown = '<span class="na">n/a</span>' if e.mean_rank is None else f"{e.mean_rank:.2f}" + (
            ' <span class="badge synthetic">synthetic only</span>' if e.synthetic_only else "")
        cells.append(td(shown, e.mean_rank))
        body.append(f'<tr data-tier="{esc(e.tier)}">' + "".join(cells) + "</tr>")
    return ('<section id="overall"><h2>Overall</h2><p>Each method\'s accuracy on every dataset (★ leader, ≈ 95% CI '
            "overlaps the leader's), ordered by its mean rank over the real datasets it ran on; methods run only on "
            "synthetic data come after, ranked there.</p>"
            '<div class="scroll"><table class="board sortable" id="table-overall"><caption>All datasets</caption>'
            + _thead(head) + "<tbody>" + "".join(body) + "</tbody></table></div></section>")


def index_html(tables: Mapping[str, Sequence[Row]], overall: Sequence[OverallRow], figures: Mapping[str, Mapping[str, str]],
               hrefs: Mapping[tuple, str | None], skipped: Sequence[Skipped], repo_url: str | None) -> str:
    datasets = list(tables)
    nav = ['<a href="#overall">Overall</a>'] + [f'<a href="#ds-{esc(slug(ds))}">{esc(dataset_title(ds))}</a>'
                                                 for ds in datasets]
    nav += ['<a href="leaderboard.csv">CSV</a>', '<a href="leaderboard.json">JSON</a>', '<a href="leaderboard.md">Markdown</a>']
    parts = ["<h1>PersonalRewardBench leaderboard</h1>",
             "<p>How well methods predict which of two responses a particular user prefers, from that user's own "
             "earlier choices. Tiers: " + "; ".join(f"<strong>{t}</strong>: {esc(h)}" for t, h in TIER_HELP.items())
             + ".</p>",
             '<nav class="toc">' + " · ".join(nav) + "</nav>"]
    if not datasets:
        parts.append('<p class="warn">No results found. Run <code>prb run</code> to produce some.</p>')
    else:
        parts.append(overall_section(overall, datasets))
        parts += [dataset_section(ds, tables[ds], figures.get(ds, {}), hrefs, repo_url) for ds in datasets]
    if skipped:
        items = "".join(f"<li><code>{esc(s.path)}</code>: {esc(s.reason)}</li>" for s in skipped)
        parts.append(f'<section id="skipped"><h2>Skipped results files</h2><ul>{items}</ul></section>')
    return page("PersonalRewardBench leaderboard", "\n".join(parts),
                description="Leaderboard of personalized reward models on PersonalRewardBench")
