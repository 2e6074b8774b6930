"""The front page: this board's own runs first, then the papers' numbers, the rules, and what was excluded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from personalrewardbench.intervals import MIN_BOOTSTRAP_UNITS, MIN_OFF_MODE_UNITS
from personalrewardbench.leaderboard.collect import Skipped
from personalrewardbench.leaderboard.render import esc, link, model_cell, page, pct, td
from personalrewardbench.leaderboard.rows import (
    TIER_HELP,
    ci_html,
    group_section,
    overall_section,
    thead,
    tie_mark,
)
from personalrewardbench.leaderboard.table import TIE_ALPHA, Board, Group, Row, dataset_title

PUBLISHED_HEAD = (("Rank", "num"), ("Method", "text"), ("Model", "text"),
                  ("Accuracy % [95% CI]", "num", "as published; a standard error is shown as 1.96 x SE"))
OURS_HEAD = ("This board's run", "num", "this board's run of the method: per-user mean with the reference code's "
             "interval kind (judgments resampled within users), the kind the paper used")
SOURCE_HEAD = ("Source", "text")


def _our_run(row: Row, board: Board) -> str:
    """This board's best full run of the same method on a dataset of the same name, on the paper's terms."""
    for g in board.groups:
        if g.dataset != row.run.dataset:
            continue
        for ours in g.rows:
            s = ours.run.scores
            if ours.run.method == row.run.method and s.get("user_mean_accuracy") is not None:
                return (f"{pct(s['user_mean_accuracy'])}" + ci_html(s, "user_mean_accuracy_ci95_reference")
                        + f' <span class="na" title="{esc(ours.run.base_model or "")}">({esc(ours.run.tier)})</span>')
    return ""


def published_section(groups: Sequence[Group], board: Board) -> str:
    if not groups:
        return ""
    out = ['<section id="published"><h2>Published numbers <span class="sub">quoted from papers, not run here</span>'
           "</h2>",
           '<p class="meta">Numbers as the papers give them, on the published benchmarks (their exact benchmark '
           "version and user set are not known here, so they are never ranked with this board's runs). Intervals "
           "are shown as 95% intervals: a published 95% CI as is, a standard error times 1.96. ≈ marks a row whose "
           "interval overlaps the leader's, only where both intervals are of the same kind; "
           "<em>≠ kind</em> marks rows that are not directly comparable because the kinds differ. Where this board "
           "has run the same method on a dataset of the same name, its run is shown with the reference code's "
           "interval kind (judgments resampled within users), so a reproduction can be read on the paper's "
           "terms.</p>"]
    for g in groups:
        ours = {id(row): _our_run(row, board) for row in g.rows}
        with_ours = any(ours.values())
        body = []
        for row in g.rows:
            r = row.run
            acc = f"<strong>{pct(r.scores['accuracy'])}</strong>" + (ci_html(r.scores, "accuracy_ci95", row.ci_kind)
                                                                       if row.ci else "") + tie_mark(row)
            cite = link(r.citation_url, r.citation) + (f'<br><span class="na">{esc(r.note)}</span>' if r.note else "")
            cells = [td(str(row.rank or ""), row.rank, cls="num"), td(f'<span class="method">{esc(r.method)}</span>',
                                                                      r.method),
                     td(model_cell(r.base_model, None), r.base_model or ""),
                     td(acc, r.scores["accuracy"], cls="num acc")]
            if with_ours:
                cells.append(td(ours[id(row)], None, cls="num"))
            cells.append(td(f'<span class="cite">{cite}</span>', r.citation or ""))
            body.append("<tr>" + "".join(cells) + "</tr>")
        head = (*PUBLISHED_HEAD, *((OURS_HEAD,) if with_ours else ()), SOURCE_HEAD)
        out.append(f'<h3 id="{esc(g.group_id)}">{esc(dataset_title(g.dataset))}</h3>'
                   f'<div class="scroll"><table class="board sortable published" id="table-{esc(g.group_id)}">'
                   f"<caption>{esc(dataset_title(g.dataset))}: published numbers</caption>{thead(head)}"
                   f"<tbody>{''.join(body)}</tbody></table></div>")
    out.append("</section>")
    return "\n".join(out)


RULES = (
    ("Which runs are shown", "Only runs whose seal checks under this board's key and whose every figure, hash and "
     "query reproduces from their predictions against the benchmark they name. Anything else is listed under "
     "<a href=\"#excluded\">excluded</a> with the reason."),
    ("Tiers", "; ".join(f"<strong>{esc(t)}</strong>: {esc(h)}" for t, h in TIER_HELP.items())
     + ". A tier comes from where a run sits (and, for reported rows, the citation file), never from the file."),
    ("One ranked table", "holds the runs on one benchmark version (content hash) that evaluated every user of it. "
     "Runs on a subset (<code>--users N</code>, an unmerged shard) get their own table per user set, never ranked "
     "against full runs and never replacing one; runs on the very same subset are ranked among themselves."),
    ("Rows", "Different configs or models of a method are different rows (a <em>cfg</em> tag tells them apart). "
     "Among identical runs (same benchmark and users, method, config, model, tier) the one with the lowest seed, "
     "then the first folder in path order, is shown; dates never decide. A shard joined by <code>prb merge</code> "
     "is not shown when its merged run is: the merged run's page lists it."),
    ("Intervals", "95%, over the right unit: pairs for accuracy (both judgments of a pair move together), users "
     "for the per-user mean. Fewer than 2 units: no interval (<em>no CI</em>). At 0% or 100%: the exact "
     f"Clopper-Pearson interval (<em>exact</em>). Fewer than {MIN_BOOTSTRAP_UNITS} effective units, or fewer than "
     f"{MIN_OFF_MODE_UNITS} units that differ from the most common result: the Wilson score interval "
     "(<em>Wilson</em>; the bootstrap covered the truth too rarely there). Otherwise the bootstrap over those units (scipy's basic method; the number of "
     "resamples is on each method page). Hover a tag for the reason."),
    ("Ties", f"≈ tied: the paired comparison with the leader on the same pairs (two-sided exact sign test over "
     f"pairs, as <code>prb compare</code>) gives p ≥ {TIE_ALPHA}. Published rows: see their section."),
    ("Degraded", "marks a run with any choice fallback (answers parsed from text because the server gave no "
     "log-probabilities) or more than 1% failed judgments; the counts are on its method page."),
)


def rules_section() -> str:
    items = "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in RULES)
    return f'<section id="rules"><h2>How to read this board</h2><dl class="rules">{items}</dl></section>'


def excluded_section(skipped: Sequence[Skipped]) -> str:
    """The excluded results folders, with reasons; always present (the rules link to it), saying
    so when nothing was excluded."""
    if not skipped:
        return ('<section id="excluded"><h2>Excluded results (0)</h2><p class="meta">None: every results folder '
                "found verified and is shown.</p></section>")
    items = "".join(f"<li><code>{esc(s.path)}</code>: {esc(s.reason)}</li>" for s in skipped)
    return (f'<section id="excluded"><h2>Excluded results ({len(skipped)})</h2><p class="meta">Results folders found '
            "but not shown, each with the reason.</p>"
            f'<ul class="excluded">{items}</ul></section>')


def index_html(board: Board, figures: Mapping[str, Mapping[str, str]], hrefs: Mapping[tuple, str | None],
               skipped: Sequence[Skipped], repo_url: str | None) -> str:
    nav = [f'<a href="#{esc(g.group_id)}">{esc(dataset_title(g.dataset))} ({len(g.users)} users)</a>'
           for g in board.groups]
    if board.subsets:
        nav.append('<a href="#subsets">Subset runs</a>')
    if board.overall:
        nav.append('<a href="#overall">Overall</a>')
    if board.reported:
        nav.append('<a href="#published">Published numbers</a>')
    nav.append('<a href="#rules">How to read this board</a>')
    if skipped:
        nav.append(f'<a href="#excluded">Excluded ({len(skipped)})</a>')
    downloads = '<a href="leaderboard.csv">CSV</a> · <a href="leaderboard.json">JSON</a> · ' \
                '<a href="leaderboard.md">Markdown</a>'
    n_runs = sum(len(g.rows) for g in board.groups)
    n_sub = sum(len(g.rows) for g in board.subsets)
    parts = ["<h1>PersonalRewardBench leaderboard</h1>",
             "<p>How well methods predict which of two responses a particular user prefers, from that user's own "
             "earlier choices. This board's own runs come first; numbers quoted from papers follow in their own "
             "section.</p>",
             f'<p class="summary">{n_runs} run{"s" if n_runs != 1 else ""} in {len(board.groups)} ranked '
             f'table{"s" if len(board.groups) != 1 else ""} · {n_sub} subset run{"s" if n_sub != 1 else ""} · '
             f'{sum(len(g.rows) for g in board.reported)} published numbers · {len(skipped)} excluded · '
             f"download {downloads}</p>",
             '<nav class="toc">' + " · ".join(nav) + "</nav>"]
    if not board.groups and not board.subsets:
        parts.append('<p class="warn">No verified runs. Run <code>prb run</code> or <code>prb evaluate</code> to '
                     "produce some" + (", and see why the folders below were excluded" if skipped else "") + ".</p>")
    parts += [group_section(g, figures.get(g.group_id, {}), hrefs, repo_url) for g in board.groups]
    if board.subsets:
        parts.append('<section id="subsets"><h2>Subset runs <span class="sub">not ranked against full runs</span>'
                     '</h2><p class="warn">These runs evaluated only some users of their benchmark (a '
                     "<code>--users N</code> sample or one shard). Their numbers are not comparable with the ranked "
                     "tables above.</p>")
        parts += [group_section(g, figures.get(g.group_id, {}), hrefs, repo_url, level=3) for g in board.subsets]
        parts.append("</section>")
    if board.overall:
        parts.append(overall_section(board.overall, board.overall_groups))
    parts.append(published_section(board.reported, board))
    parts.append(rules_section())
    parts.append(excluded_section(skipped))
    return page("PersonalRewardBench leaderboard", "\n".join(p for p in parts if p),
                description="Leaderboard of personalized reward models on PersonalRewardBench")
