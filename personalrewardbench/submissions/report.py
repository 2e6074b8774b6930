"""The Markdown report of a scoring job (pull-request comment and CI job summary).

Everything an adapter or a pull request can influence (method and folder names, error
messages, tracebacks and log lines) is escaped so it stays data: table cells are
HTML-escaped with ``|`` and Markdown punctuation neutralized and newlines flattened, and
each error message sits in a code fence longer than any run of backticks or tildes it
contains (so it cannot close the fence and write rows or headings of its own).
Numbers are formatted by the harness from its own results.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MAX_ERROR_CHARS = 6000
MAX_REPORT_CHARS = 60_000  # GitHub refuses a comment body over 65,536 characters: the report must fit one
MIN_ERROR_CHARS = 300
LOG_TAIL_LINES = 25
LOG_TAIL_BYTES = 16 * 1024
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
_CELL_SPECIAL = re.compile(r"[\\`*_\[\]()#+!|~>@]")


def md_cell(text: Any, *, code: bool = False) -> str:
    """``text`` as inert content of one Markdown table cell (optionally as inline code)."""
    s = _CONTROL.sub("", str(text)).replace("\r", " ").replace("\n", " ")[:300]
    s = html.escape(s, quote=True)
    s = _CELL_SPECIAL.sub(lambda m: f"&#{ord(m.group())};", s)
    return f"<code>{s}</code>" if code else s


def md_block(text: Any, max_chars: int = MAX_ERROR_CHARS) -> list[str]:
    """Lines of a fenced code block holding ``text`` verbatim (control characters removed; only its
    last ``max_chars`` characters when longer), fenced with more backticks than any run inside it."""
    s = _CONTROL.sub("", str(text).replace("\r\n", "\n").replace("\r", "\n")).strip("\n")
    if len(s) > max_chars:
        s = "...\n" + (s[-max_chars:] if max_chars > 0 else "")
    longest = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + "text", s, fence]


def read_log_tail(path: Path, lines: int = LOG_TAIL_LINES, max_bytes: int = LOG_TAIL_BYTES) -> list[str]:
    """The last ``lines`` lines of a log, reading at most its last ``max_bytes`` bytes (bounded memory)."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            fh.seek(max(0, size - max_bytes))
            data = fh.read(max_bytes)
    except OSError:
        return []
    text = data.decode("utf-8", errors="replace")
    out = text.splitlines()[-lines:]
    if size > max_bytes and out and len(text.splitlines()) <= lines:
        out[0] = "..." + out[0]
    return [ln[:500] for ln in out]


def _pct(x: Any) -> str:
    return "n/a" if not isinstance(x, int | float) else f"{100 * float(x):.1f}%"


def _pp(x: Any, signed: bool = True) -> str:
    if not isinstance(x, int | float):
        return "n/a"
    return f"{100 * float(x):+.1f}" if signed else f"{100 * float(x):.1f}"


def markdown_summary(outcomes: Sequence[Any], *, title: str = "Submission scores",
                     notes: Sequence[str] = (), max_chars: int | None = MAX_REPORT_CHARS) -> str:
    """A Markdown report: scores, paired differences with baselines, every failure with its report.

    ``outcomes``: :class:`~personalrewardbench.submissions.scoring.ScoreOutcome` objects;
    ``notes``: extra paragraphs from the harness (e.g. files a pull request may not change),
    escaped like everything else. The report stays within ``max_chars`` characters (one
    pull-request comment; None: no limit): when it would not, each note and failure report
    keeps only its last lines, and past that the tail is cut between blocks, saying so.
    """
    full = _summary(outcomes, title, notes, MAX_ERROR_CHARS)
    if max_chars is None or len(full) <= max_chars:
        return full
    blocks = len(notes) + sum(o.status in ("failed", "skipped") for o in outcomes)
    rest = len(_summary(outcomes, title, notes, 0))
    budget = max(MIN_ERROR_CHARS, (max_chars - rest) // max(1, blocks) - 40)
    text = _summary(outcomes, title, notes, budget)
    if len(text) <= max_chars:
        return text
    cut = f"\n(report cut at {max_chars} characters to fit one comment; the job log has all of it)\n"
    keep, size, fence, last_safe = [], 0, "", 0
    for line in text.split("\n"):
        if size + len(line) + 1 > max_chars - len(cut):
            break
        keep.append(line)
        size += len(line) + 1
        if not fence and re.fullmatch(r"`{3,}text", line):
            fence = line[:-4]
        elif fence and line == fence:
            fence = ""
        if not fence:
            last_safe = len(keep)  # never cut inside a code block
    return "\n".join(keep[:last_safe]) + "\n" + cut


def _summary(outcomes: Sequence[Any], title: str, notes: Sequence[str], error_chars: int) -> str:
    lines = [f"## {md_cell(title)}", ""]
    for note in notes:
        lines += md_block(note, error_chars) + [""]
    if not outcomes:
        return "\n".join([*lines, "No submissions were scored.", ""])
    lines += ["| method | dataset | status | accuracy [95% CI] | users | judgments |",
              "|---|---|---|---|---|---|"]
    for o in outcomes:
        s = (o.results or {}).get("scores") or {}
        ci = s.get("accuracy_ci95") or [None, None]
        acc = f"{_pct(s.get('accuracy'))} [{_pct(ci[0])}, {_pct(ci[1])}]" if s else "-"
        status = "**FAILED**" if o.status == "failed" else md_cell(o.status)
        lines.append(f"| {md_cell(o.method, code=True)} | {md_cell(o.dataset)} | {status} | {acc} | "
                     f"{md_cell(s.get('n_users', '-'))} | {md_cell(s.get('n_judgments', '-'))} |")
    for o in outcomes:
        if o.comparisons:
            lines += ["", f"### {md_cell(o.method, code=True)} vs baselines on {md_cell(o.dataset)} (same pairs)", "",
                      "| baseline | submission | baseline | difference, points [95% CI pairs] | [95% CI users] | "
                      "p (sign test) | judgments |", "|---|---|---|---|---|---|---|"]
            for c in o.comparisons:
                ci, cu = c.get("ci95") or [None, None], c.get("ci95_users") or [None, None]
                p = c.get("p_value")
                lines.append(f"| {md_cell(c['b'], code=True)} | {_pct(c['accuracy_a'])} | {_pct(c['accuracy_b'])} | "
                             f"{_pp(c['difference'])} [{_pp(ci[0])}, {_pp(ci[1])}] | [{_pp(cu[0])}, {_pp(cu[1])}] | "
                             f"{'n/a' if not isinstance(p, int | float) else f'{p:.3g}'} | "
                             f"{md_cell(c.get('n_judgments'))} |")
    failures = [o for o in outcomes if o.status in ("failed", "skipped")]
    if failures:
        lines += ["", "### Problems", ""]
        for o in failures:
            kind = f" ({md_cell(o.kind)})" if o.kind else ""
            lines += [f"**{md_cell(o.method, code=True)} on {md_cell(o.dataset)}: {md_cell(o.status)}**{kind}", "",
                      *md_block((o.error or "").strip(), error_chars), ""]
    sandbox = next(((o.results or {}).get("method_usage", {}).get("sandbox") for o in outcomes if o.results), None)
    if isinstance(sandbox, dict) and isinstance(sandbox.get("limits"), dict):
        lim = sandbox["limits"]
        lines += ["", f"Sandbox: {md_cell(sandbox.get('mode'))} mode ({md_cell('; '.join(sandbox.get('enforced', [])))})"
                      f"; limits {md_cell(lim.get('time_s'))} s, {md_cell(lim.get('memory_mb'))} MiB."]
    return "\n".join(lines).rstrip() + "\n"


_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")


def _terminal_safe(text: Any) -> str:
    """``text`` without terminal escape sequences (colours, cursor moves, titles) or control characters."""
    return _CONTROL.sub("", _ANSI.sub("", str(text)))


def _why(c: dict, name: str) -> str:
    """`` (Wilson score: 40 users < 50, conservative)`` after a conservative interval of comparison
    ``c`` (kinds wilson / clopper-pearson, :func:`~personalrewardbench.intervals.interval_note`), else ""."""
    from personalrewardbench.intervals import interval_note

    kind = (c.get("ci_kind") or {}).get(name)
    return f" ({interval_note(kind, (c.get('ci_detail') or {}).get(name))})" \
        if kind in ("wilson", "clopper-pearson") else ""


def _plain(text: Any, limit: int = 300) -> str:
    """``text`` on one line for a terminal: escape sequences and control characters removed."""
    return _terminal_safe(str(text).replace("\r", " ").replace("\n", " "))[:limit]


def console_summary(outcomes: Sequence[Any], *, title: str = "Submission scores") -> str:
    """The same report as :func:`markdown_summary`, as plain text for a terminal: no Markdown or HTML
    escapes (control characters and escape sequences are still removed from everything an adapter
    can influence), failure reports in full, and where each run's results were written."""
    lines = [_plain(title), ""]
    if not outcomes:
        return "\n".join([*lines, "No submissions were scored.", ""])
    rows = [("method", "dataset", "status", "accuracy [95% CI pairs]", "users", "judgments")]
    for o in outcomes:
        s = (o.results or {}).get("scores") or {}
        ci = s.get("accuracy_ci95") or [None, None]
        acc = f"{_pct(s.get('accuracy'))} [{_pct(ci[0])}, {_pct(ci[1])}]" if s else "-"
        rows.append((_plain(o.method, 60), _plain(o.dataset, 40), "FAILED" if o.status == "failed" else
                     _plain(o.status, 20), acc, _plain(s.get("n_users", "-"), 10), _plain(s.get("n_judgments", "-"), 10)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    for o in outcomes:
        if o.comparisons:
            lines += ["", f"{_plain(o.method, 60)} vs baselines on {_plain(o.dataset, 40)} (same pairs; difference "
                          "= submission minus baseline, in points):"]
            for c in o.comparisons:
                ci, cu = c.get("ci95") or [None, None], c.get("ci95_users") or [None, None]
                p = c.get("p_value")
                lines.append(f"  {_plain(c['b'], 60)}: {_pct(c['accuracy_a'])} vs {_pct(c['accuracy_b'])}, difference "
                             f"{_pp(c['difference'])} [95% CI pairs {_pp(ci[0])}, {_pp(ci[1])}{_why(c, 'ci95')}; "
                             f"users {_pp(cu[0])}, {_pp(cu[1])}{_why(c, 'ci95_users')}], "
                             f"p = {'n/a' if not isinstance(p, int | float) else f'{p:.3g}'} "
                             f"(two-sided exact sign test over pairs), {_plain(c.get('n_judgments'), 12)} judgments")
    failures = [o for o in outcomes if o.status in ("failed", "skipped")]
    if failures:
        lines += ["", "Problems:"]
        for o in failures:
            kind = f" ({_plain(o.kind, 40)})" if o.kind else ""
            body = _terminal_safe(str(o.error or "").replace("\r\n", "\n").replace("\r", "\n")).strip("\n")
            lines += ["", f"{_plain(o.method, 60)} on {_plain(o.dataset, 40)}: {_plain(o.status, 20)}{kind}",
                      *("  " + ln for ln in body[-MAX_ERROR_CHARS:].splitlines())]
    written = [o for o in outcomes if o.run_dir is not None]
    if written:
        lines += ["", "Results written to:"] + [f"  {_plain(o.method, 60)} on {_plain(o.dataset, 40)}: {o.run_dir}"
                                                for o in written]
    return "\n".join(lines).rstrip() + "\n"
