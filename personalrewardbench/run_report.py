"""What `prb run` prints: the per-method lines and the summary table."""

from __future__ import annotations

from typing import Any


def pct(x: Any) -> str:
    """A fraction as a percentage with one decimal, or 'n/a'."""
    return f"{100 * x:5.1f}" if isinstance(x, int | float) else "  n/a"


def _judgments(scores: dict[str, Any]) -> tuple[int | None, int | None, int | None]:
    def num(key: str) -> int | None:
        v = scores.get(key)
        return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

    return num("n_judgments"), num("n_ties"), num("n_failed")


def outcome_lines(o: Any) -> list[str]:
    """The lines `prb run` prints under a finished evaluation: how it ended (accuracy, judgments, ties,
    failed judgments, where it was written), the same ``DEGRADED`` reasons `prb evaluate` prints
    (:func:`personalrewardbench.degradation.degradation_flags`), LLM warnings and persona checks."""
    from personalrewardbench.degradation import degradation_flags

    res = o.results or {}
    how = f"reused (finished earlier in {o.seconds:.1f} s)" if o.reused else f"done in {o.seconds:.1f} s"
    if res.get("status") == "not_applicable":
        lines = [f"{how}: not applicable: {res.get('not_applicable_reason') or ''} -> {o.run_dir}"]
    else:
        s = res.get("scores") or {}
        n, ties, failed = _judgments(s)
        counts = f" ({n} judgments: {ties} ties, {failed} failed)" if n is not None else ""
        lines = [f"{how}: accuracy {pct(s.get('accuracy')).strip()}%{counts} -> {o.run_dir}"]
    lines += [f"DEGRADED: {flag}" for flag in degradation_flags(res)]
    if getattr(o, "llm_note", None):
        lines.append(f"warning: {o.llm_note}")
    return lines + artifact_notes(res)


def summary_table(outcomes: list[Any]) -> str:
    """Plain-text summary: one line per (dataset, method), best first within a dataset, with the
    judgments that tied or failed (both scored wrong), then one ``DEGRADED`` line per reason a run is
    marked degraded (as `prb evaluate` prints and the board marks it)."""
    from personalrewardbench.degradation import degradation_flags

    mw = max([26, *(len(o.method) for o in outcomes)])
    dw = max([18, *(len(o.dataset) for o in outcomes)])
    head = f"{'dataset':{dw}s} {'method':{mw}s} {'users':>5s} {'acc %':>6s} {'95% CI pairs':>13s} " \
           f"{'user-mean %':>11s} {'pos.cons %':>10s} {'ties':>5s} {'failed':>6s} {'seconds':>8s}  status"
    lines = [head, "-" * len(head)]
    notes: list[str] = []

    def key(o: Any) -> tuple:
        acc = ((o.results or {}).get("scores") or {}).get("accuracy")
        return (o.dataset, acc is None, -(acc or 0.0), o.method)

    for o in sorted(outcomes, key=key):
        res = o.results or {}
        s = res.get("scores") or {}
        ci = s.get("accuracy_ci95")
        ci_txt = f"[{pct(ci[0]).strip()}, {pct(ci[1]).strip()}]" if ci else "n/a"
        flags = [] if o.error else degradation_flags(res)
        status = ("FAILED: " + (o.error or "")) if o.error else (
            "not applicable" if res.get("status") == "not_applicable" else "DEGRADED" if flags else "ok") \
            + (" (reused)" if o.reused else "")
        if getattr(o, "llm_note", None) and not o.error:
            status += f" ({o.llm_note})"
        notes += [f"DEGRADED {o.method} on {o.dataset}: {flag}" for flag in flags]
        n_users = (res.get("dataset") or {}).get("n_users")
        _, ties, failed = _judgments(s)
        lines.append(f"{o.dataset:{dw}s} {o.method:{mw}s} {n_users if n_users is not None else '':>5} "
                     f"{pct(s.get('accuracy')):>6s} {ci_txt:>13s} "
                     f"{pct(s.get('user_mean_accuracy')):>11s} {pct(s.get('position_consistency')):>10s} "
                     f"{'' if ties is None else ties:>5} {'' if failed is None else failed:>6} "
                     f"{o.seconds:8.1f}  {status}")
    if notes:
        lines += ["", *notes]
    lines += ["", "95% CI pairs: the 95% interval over test pairs (both judgments of a pair resampled together; "
                  "the interval over users is in results.json and on the method page); ties and failed judgments "
                  "count as wrong"]
    return "\n".join(lines)


NOT_PERSONA_KEYS = ("personas_not_personas", "persona_quality")  # method_usage keys with counts of bad personas


def artifact_notes(results: dict[str, Any]) -> list[str]:
    """Lines about a run's per-user outputs: the counts of outputs that are not personas (empty,
    echoed labels, repeated text, ...) when the method reports them in ``method_usage``."""
    usage = results.get("method_usage") or {}
    lines = []
    for key in NOT_PERSONA_KEYS:
        counts = usage.get(key) if isinstance(usage, dict) else None
        if isinstance(counts, dict) and counts:
            text = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items() if isinstance(v, int | float))
            lines.append(f"persona checks: {text} (method_usage.{key} in results.json; per user in "
                         "artifacts.json and on the method page)")
    return lines
