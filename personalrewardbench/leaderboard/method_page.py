"""One page per method: each of its runs with config, provenance, the per-user table and personas."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from personalrewardbench.leaderboard.index_page import TIER_HELP, submission_href
from personalrewardbench.leaderboard.render import ci_text, esc, link, num, page, pct, pretty_json, safe_url, td
from personalrewardbench.leaderboard.table import Row, dataset_title, slug

PROVENANCE_KEYS = ("package_version", "git_commit", "command", "llm_identity", "seed", "python", "platform",
                   "started_at", "finished_at")


def _scores(row: Row) -> str:
    r, s, c = row.run, row.run.scores, row.run.cost
    if r.status != "ok":
        return f'<p class="na">Not applicable: {esc(r.not_applicable_reason or "the method cannot run on this dataset")}</p>'
    items = [("Accuracy", f"{pct(s.get('accuracy'))}% {ci_text(row.ci)}"),
             ("Rank on this dataset", str(row.rank) + (" (statistically tied with the leader)" if row.tied else "")),
             ("Per-user mean accuracy", f"{pct(s.get('user_mean_accuracy'))}% {ci_text(s.get('user_mean_accuracy_ci95'))}"
              if s.get("user_mean_accuracy") is not None else ""),
             ("Position consistency", f"{pct(s.get('position_consistency'))}%" if s.get("position_consistency") is not None else ""),
             ("Users / test pairs / judgments", " / ".join(esc(s.get(k, "")) for k in ("n_users", "n_pairs", "n_judgments"))),
             ("Ties / failed judgments", f"{esc(s.get('n_ties', ''))} / {esc(s.get('n_failed', ''))}"),
             ("Tokens per 1,000 judgments", num(c.get("tokens_per_1000_judgments"))),
             ("Seconds per 1,000 judgments", num(c.get("seconds_per_1000_judgments"))),
             ("LLM calls / cache hits", f"{esc(c.get('llm_calls', ''))} / {esc(c.get('cache_hits', ''))}" if c else "")]
    rows = "".join(f"<tr><th scope=\"row\">{esc(k)}</th><td>{v if k != 'Accuracy' else esc(v)}</td></tr>"
                   for k, v in items if v and v.strip(" /%"))
    return f'<table class="kv">{rows}</table>'


def _provenance(row: Row) -> str:
    p = row.run.provenance
    if not p:
        return ""
    rows = "".join(f"<tr><th scope=\"row\">{esc(k)}</th><td><code>{esc(p[k])}</code></td></tr>"
                   for k in PROVENANCE_KEYS if p.get(k) not in (None, ""))
    rest = {k: v for k, v in p.items() if k not in PROVENANCE_KEYS}
    extra = f"<details><summary>All provenance fields</summary><pre>{pretty_json(rest)}</pre></details>" if rest else ""
    return f'<h4>Provenance</h4><table class="kv">{rows}</table>{extra}'


def _per_user(row: Row) -> str:
    pu = row.run.per_user
    if not pu:
        return ""
    head = "".join(f'<th scope="col" data-type="{t}">{h}</th>' for h, t in (
        ("User", "text"), ("Accuracy %", "num"), ("Test pairs", "num"), ("Train pairs", "num"), ("Val pairs", "num"),
        ("Ties", "num"), ("Failed", "num")))
    body = []
    for uid in sorted(pu):
        u = pu[uid]
        body.append("<tr>" + td(esc(uid), uid) + td(pct(u.get("accuracy")), u.get("accuracy"))
                    + "".join(td(esc(u.get(k, "")), u.get(k)) for k in ("n_pairs", "n_train", "n_val", "n_ties", "n_failed"))
                    + "</tr>")
    return (f"<h4>Per-user accuracy ({len(pu)} users)</h4><div class=\"scroll\"><table class=\"sortable peruser\">"
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>")


def _artifacts(row: Row) -> str:
    arts = row.run.artifacts
    if not arts:
        return ""
    title = "Personas" if "persona" in row.run.method or "synthesizeme" in row.run.method else "Artifacts"
    items = "".join(f"<details><summary>{esc(uid)}</summary><pre class=\"persona\">{esc(arts[uid])}</pre></details>"
                    for uid in sorted(arts))
    return f"<h4>{title} ({len(arts)} users, written by the method)</h4>{items}"


def _run_section(row: Row, results_href: str | None, repo_url: str | None) -> str:
    r = row.run
    head = f"{dataset_title(r.dataset)} · {r.tier}" + (f" · {r.base_model}" if r.base_model else "")
    parts = [f'<section class="run" id="run-{esc(slug(r.dataset + "-" + r.tier + "-" + (r.base_model or "")))}">',
             f"<h3>{esc(head)}" + (' <span class="badge synthetic">synthetic data</span>' if r.synthetic else "") + "</h3>",
             f'<p class="meta">Tier <strong>{esc(r.tier)}</strong>: {esc(TIER_HELP.get(r.tier, ""))}.'
             + (f" Run <code>{esc(r.run_id)}</code>, {esc(r.date)}." if r.tier != "reported" else "") + "</p>"]
    links = []
    if results_href:
        links.append(f'<a href="../{esc(results_href)}">results.json</a>')
    href, text = submission_href(r, repo_url)
    if href:
        links.append(link(href, f"submission ({text})"))
    elif text:
        links.append(f"source: <code>{esc(text)}</code>")
    if r.citation:
        links.append("citation: " + (link(r.citation_url, r.citation) if safe_url(r.citation_url) else esc(r.citation)))
    if r.note:
        links.append(f"note: {esc(r.note)}")
    if links:
        parts.append("<p>" + " · ".join(links) + "</p>")
    parts.append(_scores(row))
    if r.config:
        parts.append(f"<h4>Config</h4><pre>{pretty_json(r.config)}</pre>")
    parts += [_provenance(row), _per_user(row), _artifacts(row), "</section>"]
    return "\n".join(p for p in parts if p)


def method_html(method: str, rows: Sequence[Row], hrefs: Mapping[tuple, str | None], repo_url: str | None) -> str:
    """The page of one method (all its runs, ordered by dataset then tier)."""
    body = [f"<h1>Method <code>{esc(method)}</code></h1>",
            '<p><a href="../index.html">Back to the leaderboard</a></p>']
    body += [_run_section(r, hrefs.get(r.run.key), repo_url) for r in rows]
    return page(f"{method}: PersonalRewardBench", "\n".join(body), root="../")
