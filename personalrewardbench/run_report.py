"""What `prb run` prints: the per-method lines and the summary table."""

from __future__ import annotations

from typing import Any


def pct(x: Any) -> str:
    """A fraction as a percentage with one decimal, or 'n/a'."""
    return f"{100 * x:5.1f}" if isinstance(x, int | float) else "  n/a"


def summary_table(outcomes: list[Any]) -> str:
    """Plain-text summary: one line per (dataset, method), best first within a dataset."""
    head = f"{'dataset':18s} {'method':26s} {'users':>5s} {'acc %':>6s} {'95% CI':>13s} {'user-mean %':>11s} " \
           f"{'pos.cons %':>10s} {'seconds':>8s}  status"
    lines = [head, "-" * len(head)]

    def key(o: Any) -> tuple:
        acc = ((o.results or {}).get("scores") or {}).get("accuracy")
        return (o.dataset, acc is None, -(acc or 0.0), o.method)

    for o in sorted(outcomes, key=key):
        res = o.results or {}
        s = res.get("scores") or {}
        ci = s.get("accuracy_ci95")
        ci_txt = f"[{pct(ci[0]).strip()}, {pct(ci[1]).strip()}]" if ci else "n/a"
        status = ("FAILED: " + (o.error or "")) if o.error else (
            "not applicable" if res.get("status") == "not_applicable" else "ok") + (" (reused)" if o.reused else "")
        if getattr(o, "llm_note", None) and not o.error:
            status += f" ({o.llm_note})"
        n_users = (res.get("dataset") or {}).get("n_users")
        lines.append(f"{o.dataset[:18]:18s} {o.method[:26]:26s} {n_users if n_users is not None else '':>5} "
                     f"{pct(s.get('accuracy')):>6s} {ci_txt:>13s} "
                     f"{pct(s.get('user_mean_accuracy')):>11s} {pct(s.get('position_consistency')):>10s} "
                     f"{o.seconds:8.1f}  {status}")
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
