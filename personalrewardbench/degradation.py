"""Degradation counters: what went quietly wrong in a run, recorded in results.json and marked on the board.

A run can finish with every query answered and still be degraded: a server that
returns no log-probabilities makes the LLM layer fall back to parsing generated
text (``choice_fallbacks``), long prompts are cut (``truncated_prompts``),
requests fail or are refused, judgments fail (``p`` is None: counted wrong).
``results.json`` carries them in a ``degradation`` section:

- ``llm``: every numeric counter of ``llm.usage.as_dict()`` (``extra`` flattened,
  nested keys joined with dots) except the cost fields already in ``cost``
  (calls, cache hits, tokens, seconds), as the change over the run (like cost:
  summed over resumed invocations and merged shards);
- ``method``: every numeric leaf of the method's own ``usage()`` (dotted keys);
- ``judgments``: ``n_judgments``, ``n_failed``, ``n_ties`` and ``failed_share``
  from the scorer;
- totals for the counters the board and README name (:data:`TOTALS`): for each,
  the largest count any source reports (the LLM layer and a method may count the
  same event, so counts are not added across sources). ``choice_fallbacks``
  also reads the legacy name ``choice_fallback``.

:func:`degradation_flags` gives the board's reasons to mark a row: any choice
fallback, any answer naming another model than the one asked (``model_mismatches``),
or more than :data:`FAILED_SHARE_MARK` (1%) of judgments failed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

COST_FIELDS = ("calls", "cache_hits", "prompt_tokens", "completion_tokens", "seconds")
TOTALS = {
    "choice_fallbacks": ("choice_fallbacks", "choice_fallback"),
    "truncated_prompts": ("truncated_prompts", "truncated_prompt"),
    "failed_requests": ("failed_requests", "failed_request"),
    "refused_requests": ("refused_requests", "refused_request", "refusals"),
    "retries": ("retries", "retried_requests"),
    "model_mismatches": ("model_mismatches",),
}
FAILED_SHARE_MARK = 0.01
MAX_COUNTERS = 200  # a method's usage() is its own business; keep what results.json carries bounded


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def numeric_leaves(data: Any, prefix: str = "", depth: int = 0) -> dict[str, float]:
    """Numeric leaves of nested mappings as ``{"a.b": value}`` (bools, NaN, non-numbers skipped)."""
    out: dict[str, float] = {}
    if not isinstance(data, Mapping) or depth > 6:
        return out
    for k, v in data.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(numeric_leaves(v, name + ".", depth + 1))
        else:
            x = _number(v)
            if x is not None:
                out[name] = x
        if len(out) >= MAX_COUNTERS:
            break
    return dict(list(out.items())[:MAX_COUNTERS])


def llm_counters(llm: Any) -> dict[str, float]:
    """Numeric counters of ``llm.usage`` except cost fields; ``extra`` is flattened into the top level
    (a name that clashes with a field keeps an ``extra.`` prefix). Empty without an LLM."""
    usage = getattr(llm, "usage", None) if llm is not None else None
    if usage is None:
        return {}
    try:
        raw = usage.as_dict() if hasattr(usage, "as_dict") else dict(vars(usage))
    except Exception:  # noqa: BLE001 - counters must never sink a run
        return {}
    extra = raw.pop("extra", None) or {}
    out = {k: v for k, v in numeric_leaves(raw).items() if k not in COST_FIELDS}
    for k, v in numeric_leaves(extra).items():
        out[f"extra.{k}" if k in out or k in COST_FIELDS else k] = v
    return out


def _clean(values: Mapping[str, float]) -> dict[str, int | float]:
    return {k: int(v) if float(v).is_integer() else round(float(v), 6) for k, v in sorted(values.items())}


def _total(name: str, *sources: Mapping[str, float]) -> int | float:
    aliases = TOTALS[name]
    best = 0.0
    for src in sources:
        for key, value in src.items():
            if key.rsplit(".", 1)[-1] in aliases:
                best = max(best, float(value))
    return int(best) if best.is_integer() else round(best, 6)


def degradation_section(llm_delta: Mapping[str, float], method_usage: Any, scores: Mapping[str, Any] | None
                        ) -> dict[str, Any]:
    """The ``degradation`` section of results.json (see module doc)."""
    method = numeric_leaves(method_usage) if isinstance(method_usage, Mapping) else {}
    s = scores or {}
    n, failed = int(s.get("n_judgments") or 0), int(s.get("n_failed") or 0)
    out: dict[str, Any] = {"llm": _clean(llm_delta), "method": _clean(method),
                           "judgments": {"n_judgments": n, "n_failed": failed, "n_ties": int(s.get("n_ties") or 0),
                                         "failed_share": round(failed / n, 6) if n else 0.0}}
    for name in TOTALS:
        out[name] = _total(name, llm_delta, method)
    return out


def merge_degradation(sections: Iterable[Mapping[str, Any] | None], scores: Mapping[str, Any] | None
                      ) -> dict[str, Any]:
    """One section for merged shards: llm and method counters summed, judgments from the merged scores."""
    llm: dict[str, float] = {}
    method: dict[str, float] = {}
    for sec in sections:
        sec = sec or {}
        for target, part in ((llm, sec.get("llm")), (method, sec.get("method"))):
            for k, v in numeric_leaves(part or {}).items():
                target[k] = target.get(k, 0.0) + v
    out = degradation_section(llm, {}, scores)
    out["method"] = _clean(method)
    for name in TOTALS:
        out[name] = _total(name, llm, method)
    return out


def degradation_flags(results: Mapping[str, Any]) -> list[str]:
    """Reasons to mark a run on the board (empty: nothing to mark). Reads the counters under any name
    the LLM layer has used, so older results with ``choice_fallback`` are marked too."""
    deg = results.get("degradation") if isinstance(results.get("degradation"), Mapping) else {}
    scores = results.get("scores") if isinstance(results.get("scores"), Mapping) else {}
    llm = numeric_leaves(deg.get("llm") or {})
    method = numeric_leaves(deg.get("method") or {})
    flags = []
    fallbacks = max(_total("choice_fallbacks", llm, method), _number(deg.get("choice_fallbacks")) or 0)
    if fallbacks > 0:
        flags.append(f"{int(fallbacks)} choice fallback{'s' if fallbacks != 1 else ''} (answers parsed from text: "
                     "the server gave no log-probabilities)")
    mismatches = _total("model_mismatches", llm, method)
    if mismatches > 0:
        flags.append(f"{int(mismatches)} answer{'s' if mismatches != 1 else ''} naming another model than the one "
                     "asked (the run's model identity may not name what answered)")
    n = _number(scores.get("n_judgments")) or 0
    failed = _number(scores.get("n_failed")) or 0
    if n and failed / n > FAILED_SHARE_MARK:
        flags.append(f"{int(failed)} of {int(n)} judgments failed ({failed / n:.1%}, over the "
                     f"{FAILED_SHARE_MARK:.0%} mark)")
    return flags
