"""One page per method: each of its rows with the full model identity, intervals and their kinds, the
comparison with the leader, degradation counts, config, provenance, the per-user table and personas."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from personalrewardbench.leaderboard.render import ci_text, esc, link, num, page, pct, pretty_json, safe_url, td
from personalrewardbench.leaderboard.rows import TIER_HELP, submission_href
from personalrewardbench.leaderboard.table import KIND_TEXT, Group, Row, dataset_title

PROVENANCE_KEYS = ("package_version", "git_commit", "command", "llm_identity", "seed", "python", "platform",
                   "started_at", "finished_at")
INTERVALS = (("accuracy_ci95", "Accuracy, 95% CI over pairs"), ("accuracy_ci95_users", "Accuracy, 95% CI over users"),
             ("user_mean_accuracy_ci95", "Per-user mean, 95% CI over users"),
             ("user_mean_accuracy_ci95_reference", "Per-user mean, the reference code's CI (judgments within users)"))


def _kv(items: Sequence[tuple[str, str]]) -> str:
    """A two-column table; values are already-escaped HTML; empty values are left out."""
    rows = "".join(f'<tr><th scope="row">{esc(k)}</th><td>{v}</td></tr>' for k, v in items if v)
    return f'<table class="kv">{rows}</table>' if rows else ""


def _interval_rows(s: Mapping[str, Any]) -> list[tuple[str, str]]:
    out = []
    kinds, details = s.get("ci_kind") or {}, s.get("ci_detail") or {}
    for name, label in INTERVALS:
        if name not in s:
            continue
        d = details.get(name) or {}
        est = s.get("accuracy") if name.startswith("accuracy") else s.get("user_mean_accuracy")
        unit = f"{d.get('n_units')} {d.get('unit')}s" if d.get("n_units") is not None else ""
        how = ", ".join(x for x in (esc(kinds.get(name) or ""), esc(unit), esc(d.get("reason") or "")) if x)
        shown = f"{pct(est)}% {ci_text(s.get(name))}" if s.get(name) else f"{pct(est)}% (no interval)"
        out.append((label, f"{esc(shown)} <span class=\"na\">{how}</span>"))
    return out


def _vs_leader(row: Row) -> str:
    cmp = row.vs_leader
    if row.leader:
        return "leader of this table"
    if not cmp:
        return esc(row.note)
    ci = cmp.get("ci95")
    kind = {"bootstrap-basic": "bootstrap", "wilson": "Wilson score", "clopper-pearson": "exact"}.get(
        (cmp.get("ci_kind") or {}).get("ci95", ""), "")
    ci_text_ = (f"[{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]{f', {kind}' if kind else ''}" if ci
                else "none: fewer than 2 pairs")
    verdict = "statistically tied with the leader" if row.tied else "below the leader"
    return esc(f"{verdict}: the leader is {100 * cmp['difference']:+.1f} points ahead on {cmp['n_pairs']} shared "
               f"pairs (paired 95% CI over pairs {ci_text_}); exact sign test "
               f"p = {cmp['p_value']:.3g} ({cmp['wins_a']} pairs favour the leader, {cmp['wins_b']} this run)")


def _degradation(row: Row) -> str:
    r = row.run
    deg = r.raw.get("degradation") if isinstance(r.raw.get("degradation"), Mapping) else None
    if not deg and not r.degradation:
        return ""
    parts = ["<h4>Degradation</h4>"]
    if r.degradation:
        parts.append('<p class="warn">Marked on the board: ' + esc("; ".join(r.degradation)) + ".</p>")
    if deg:
        totals = [(k.replace("_", " "), esc(deg.get(k))) for k in
                  ("choice_fallbacks", "truncated_prompts", "failed_requests", "refused_requests", "retries")
                  if k in deg]
        j = deg.get("judgments") if isinstance(deg.get("judgments"), Mapping) else {}
        totals.append(("failed judgments", esc(f"{j.get('n_failed', '')} of {j.get('n_judgments', '')}")))
        parts.append(_kv([(k, v if v not in ("", "0") else "0") for k, v in totals]))
        rest = {k: deg.get(k) for k in ("llm", "method") if deg.get(k)}
        if rest:
            parts.append(f"<details><summary>Every counter</summary><pre>{pretty_json(rest)}</pre></details>")
    return "\n".join(parts)


def _scores(row: Row, group: Group) -> str:
    r, s, c = row.run, row.run.scores, row.run.cost
    if r.status != "ok":
        return f'<p class="na">Not applicable: {esc(r.not_applicable_reason or "the method cannot run on this dataset")}</p>'
    if r.tier == "reported":
        return _kv([("Accuracy", esc(f"{pct(s.get('accuracy'))}% {ci_text(row.ci)}")),
                    ("Interval as published", esc(KIND_TEXT.get(r.uncertainty_kind or "", "none given"))),
                    ("Against the leader", esc(row.note) if row.note else ("tied (same-kind intervals overlap)"
                                                                             if row.tied else ""))])
    items = _interval_rows(s)
    boot = s.get("bootstrap") if isinstance(s.get("bootstrap"), Mapping) else {}
    if boot:
        items.append(("Bootstrap", esc(f"{boot.get('resamples')} resamples, seed {boot.get('seed')}, scipy "
                                       f"{boot.get('method', 'basic')} method")))
    items += [("Rank", esc(row.rank) if row.rank is not None else "not ranked (subset run)"),
              ("Against the leader", _vs_leader(row) if not group.subset else ""),
              ("Position consistency", f"{pct(s.get('position_consistency'))}%" if s.get("position_consistency")
               is not None else ""),
              ("Users / test pairs / judgments", esc(f"{len(r.users)} of {r.benchmark_users} / {s.get('n_pairs')} / "
                                                     f"{s.get('n_judgments')}") + (f" (shard {esc(r.shard)})"
                                                                                    if r.shard else "")),
              ("Ties / failed judgments", esc(f"{s.get('n_ties', '')} / {s.get('n_failed', '')}")),
              ("Tokens per 1,000 judgments", num(c.get("tokens_per_1000_judgments"))),
              ("Seconds per 1,000 judgments", num(c.get("seconds_per_1000_judgments"))),
              ("LLM calls / cache hits", esc(f"{c.get('llm_calls', '')} / {c.get('cache_hits', '')}") if c else "")]
    return _kv(items)


def _provenance(row: Row) -> str:
    p = row.run.provenance
    if not p:
        return ""
    rows = [(k, f"<code>{esc(p[k])}</code>") for k in PROVENANCE_KEYS if p.get(k) not in (None, "")]
    rest = {k: v for k, v in p.items() if k not in PROVENANCE_KEYS}
    extra = f"<details><summary>All provenance fields</summary><pre>{pretty_json(rest)}</pre></details>" if rest else ""
    return f"<h4>Provenance</h4>{_kv(rows)}{extra}"


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


def _run_section(row: Row, group: Group, results_href: str | None, repo_url: str | None) -> str:
    r = row.run
    where = ("published" if r.tier == "reported" else
             f"all {len(r.users)} users" if not group.subset else f"subset: {len(r.users)} of {r.benchmark_users} users")
    head = f"{dataset_title(r.dataset)} · {where} · {r.tier}"
    parts = [f'<section class="run" id="run-{row.row_id}">',
             f"<h3>{esc(head)}" + (' <span class="badge synthetic">synthetic data</span>' if r.synthetic else "")
             + (' <span class="badge degraded">degraded</span>' if r.degradation else "") + "</h3>",
             f'<p class="meta">Tier <strong>{esc(r.tier)}</strong>: {esc(TIER_HELP.get(r.tier, ""))}.</p>']
    ident = [("Base model", f"<code>{esc(r.base_model)}</code>" if r.base_model else ""),
             ("LLM identity", f"<code>{esc(r.llm_identity)}</code>" if r.llm_identity else "")]
    if r.tier != "reported":
        ident += [("Benchmark", f"<code>{esc(r.dataset)}</code> content hash <code>{esc(r.content_hash)}</code>"),
                  ("Run", f"<code>{esc(r.run_id)}</code>, {esc(r.date or '')}, folder <code>{esc(r.path)}</code>"),
                  ("Verified", esc(f"seal checked; figures reproduce; benchmark {r.how_verified}")),
                  ("Identical runs not shown", "<br>".join(f"<code>{esc(p)}</code>" for p in r.identical)),
                  ("Shards joined into this run (not shown)",
                   "<br>".join(f"<code>{esc(p)}</code>" for p in r.merged_shards))]
    links = []
    if results_href:
        links.append(f'<a href="../{esc(results_href)}">results.json</a>')
    href, text = submission_href(r, repo_url)
    if href:
        links.append(link(href, f"code ({text})"))
    elif text:
        links.append(f"<code>{esc(text)}</code>")
    if r.citation:
        links.append(link(r.citation_url, r.citation) if safe_url(r.citation_url) else esc(r.citation))
    if r.note:
        links.append(f"note: {esc(r.note)}")
    ident.append(("Links", " · ".join(links)))
    parts += [_kv(ident), _scores(row, group), _degradation(row)]
    if r.config:
        parts.append(f"<h4>Config</h4><pre>{pretty_json(r.config)}</pre>")
    parts += [_provenance(row), _per_user(row), _artifacts(row), "</section>"]
    return "\n".join(p for p in parts if p)


def method_html(method: str, rows: Sequence[tuple[Group, Row]], hrefs: Mapping[tuple, str | None],
                repo_url: str | None) -> str:
    """The page of one method: every row it has on the board, in board order."""
    body = [f"<h1>Method <code>{esc(method)}</code></h1>",
            '<p><a href="../index.html">Back to the leaderboard</a></p>']
    body += [_run_section(row, g, hrefs.get(row.run.key), repo_url) for g, row in rows]
    return page(f"{method}: PersonalRewardBench", "\n".join(body), root="../")
