"""95% intervals that never claim more certainty than the data holds.

Every accuracy interval in results.json is chosen by one rule, over its own
resampling unit (pairs for ``accuracy_ci95``, users for ``accuracy_ci95_users``
and ``user_mean_accuracy_ci95``), and the rule's choice is recorded as
``scores.ci_kind[name]`` with the details in ``scores.ci_detail[name]``:

1. fewer than :data:`MIN_UNITS` (2) units: no interval (``None``, kind ``"none"``),
   with the reason;
2. the estimate is exactly 0 or 1 (every unit agrees, so any bootstrap is
   zero-width): the exact Clopper-Pearson interval (Clopper & Pearson 1934) from
   ``scipy.stats.binomtest(k, n).proportion_ci(method="exact")``, with ``n`` the
   effective number of units rounded down and ``k`` = 0 or ``n``; kind
   ``"clopper-pearson"``;
3. fewer than :data:`MIN_BOOTSTRAP_UNITS` (50) effective units, fewer than
   :data:`MIN_OFF_MODE_UNITS` (10) units whose figure differs from the most common one
   (e.g. 3 wrong pairs out of 100), no resamples, or a bootstrap interval that is
   zero-width or does not contain the estimate: the Wilson score interval (Wilson
   1927) for the estimate over the effective number of units; kind ``"wilson"``.
   With a whole number of successes it equals scipy's
   ``binomtest(k, n).proportion_ci(method="wilson")``; here the count may be
   fractional (a unit's accuracy is a share), which the score formula allows;
4. otherwise the bootstrap over units with scipy's "basic" method (the
   reference code's choice); kind ``"bootstrap-basic"``.

The thresholds of rule 3 come from ``scripts/bench/bench_interval_coverage.py``
(400 simulated data sets per cell, known truth): the basic bootstrap covered the
truth in 62-92% of runs with 10-20 units at 85-95% accuracy, and about 91% at 50
units and 95% accuracy, where the spread comes from a handful of wrong units; scipy's
BCa did little better (62-93%). The Wilson interval over the effective units covered
at least 96% in every cell (conservative: up to about twice the bootstrap's width for
users whose accuracy varies less than a coin's). From 50 units with at least 10 units
off the most common result the bootstrap covered 93-95%.

:func:`difference_interval` applies the same rule to a paired difference of two
runs (``prb compare``), on ``(difference + 1) / 2``.

The effective number of units is Kish's (1965) ``(sum n_u)^2 / sum n_u^2``, with
``n_u`` the judgments in unit ``u`` (equal to the number of units when every unit
has as many judgments, e.g. pairs judged in both orders). The binomial intervals
treat each unit as one trial whose accuracy is a share in [0, 1]; a share varies
no more than a 0/1 outcome with the same mean, so these intervals are
conservative, never narrower than the data allow.

:func:`reference_interval` is the extra figure that matches the SynthesizeMe
reference code's ``evaluate()`` (SALT-NLP/SynthesizeMe, commit e91f340): each
judgment resampled on its own (unpaired) within its user, 9,999 resamples, scipy
"basic", around the mean of per-user accuracies. It is narrower than the pair or
user bootstrap because it ignores that the two judgments of a pair, and the
judgments of a user, move together; it is offered so a reproduced row can be held
against a paper's number on the paper's terms, never used for ranking.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

MIN_UNITS = 2
MIN_BOOTSTRAP_UNITS = 50  # effective units; below it the bootstrap undercovers (scripts/bench/bench_interval_coverage.py)
MIN_OFF_MODE_UNITS = 10  # units away from the most common unit value: the bootstrap's spread comes only from them
REFERENCE_RESAMPLES = 9999  # scipy.stats.bootstrap's default, as the reference code calls it
CONFIDENCE = 0.95
KINDS = ("bootstrap-basic", "clopper-pearson", "wilson", "reference-bootstrap-basic", "none")


def _z() -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + CONFIDENCE / 2))


def effective_units(weights: np.ndarray) -> float:
    """Kish's effective sample size ``(sum w)^2 / sum w^2`` of units with ``weights`` (judgments per unit)."""
    w = np.asarray(weights, dtype=float)
    w = w[w > 0]
    if w.size == 0:
        return 0.0
    return float(w.sum() ** 2 / (w ** 2).sum())


def clopper_pearson(k: int, n: int) -> list[float]:
    """Exact 95% binomial interval for ``k`` successes in ``n`` trials (scipy's ``binomtest``)."""
    from scipy.stats import binomtest

    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=CONFIDENCE, method="exact")
    return [float(ci.low), float(ci.high)]


def wilson(p_hat: float, n: float) -> list[float]:
    """Wilson score 95% interval for a proportion ``p_hat`` over ``n`` trials (``n`` may be fractional).

    Formula: (p + z^2/2n +- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n), Wilson (1927).
    """
    z = _z()
    z2 = z * z
    centre = (p_hat + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(max(0.0, p_hat * (1 - p_hat) / n + z2 / (4 * n * n))) / (1 + z2 / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def basic_bootstrap(stat: float, boot: np.ndarray) -> list[float] | None:
    """The "basic" (reverse percentile) 95% interval ``[2s - q_hi, 2s - q_lo]``, clipped to [0, 1]."""
    if boot.size == 0:
        return None
    lo_q, hi_q = np.quantile(boot, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return [float(min(1.0, max(0.0, 2 * stat - hi_q))), float(min(1.0, max(0.0, 2 * stat - lo_q)))]


def off_mode_units(values: np.ndarray) -> int:
    """How many units differ from the most common unit value (e.g. pairs not fully right at 95% accuracy,
    or pairs on which two runs differ in a comparison). ``values``: one figure per unit."""
    v = np.round(np.asarray(values, dtype=float), 12)
    if v.size == 0:
        return 0
    _, counts = np.unique(v, return_counts=True)
    return int(v.size - counts.max())


def choose_interval(stat: float | None, boot: np.ndarray, weights: np.ndarray, unit: str,
                    resamples: int, values: np.ndarray | None = None, *,
                    min_bootstrap_units: float = MIN_BOOTSTRAP_UNITS,
                    min_off_mode: int = MIN_OFF_MODE_UNITS) -> tuple[list[float] | None, str, dict[str, Any]]:
    """Apply the module's rule to one figure.

    ``stat``: the estimate (fraction); ``boot``: its bootstrap replicates over units;
    ``weights``: judgments per unit (shape: units); ``unit``: "pair" or "user";
    ``values``: the figure per unit (shape: units; its units with weight 0 are ignored), for
    the count of units away from the most common value (:func:`off_mode_units`; not checked
    when None). ``min_bootstrap_units``/``min_off_mode``: the thresholds of rule 3 (the
    coverage script passes the old ones to show them side by side).
    Returns ``(interval or None, kind, detail)`` where detail holds ``unit``,
    ``n_units``, ``n_effective`` and, when the bootstrap was not used, ``reason``.
    """
    n_units = int(np.count_nonzero(np.asarray(weights) > 0))
    n_eff = effective_units(weights)
    detail: dict[str, Any] = {"unit": unit, "n_units": n_units, "n_effective": round(n_eff, 6)}
    off = None if values is None else off_mode_units(np.asarray(values)[np.asarray(weights) > 0])
    if stat is None or n_units < MIN_UNITS:
        detail["reason"] = (f"{n_units} {unit}{'' if n_units == 1 else 's'} with judgments: an interval needs at "
                            f"least {MIN_UNITS} resampling units")
        return None, "none", detail
    if stat in (0.0, 1.0):
        n = max(1, math.floor(n_eff + 1e-9))
        detail["reason"] = (f"every {unit} scored {stat:.0%}: a bootstrap would be zero-width, so the exact "
                            f"Clopper-Pearson interval over {n} {unit}s")
        return clopper_pearson(0 if stat == 0.0 else n, n), "clopper-pearson", detail
    ci = basic_bootstrap(stat, boot) if resamples > 0 else None
    if n_eff < min_bootstrap_units:
        detail["reason"] = (f"{n_eff:.3g} effective {unit}s (< {min_bootstrap_units:g}): too few for a bootstrap, "
                            "so the Wilson score interval")
    elif off is not None and off < min_off_mode:
        detail["reason"] = (f"only {off} {unit}{'' if off == 1 else 's'} differ from the most common {unit} result "
                            f"(< {min_off_mode}): too few for a bootstrap, so the Wilson score interval")
    elif ci is None:
        detail["reason"] = "bootstrap disabled (0 resamples), so the Wilson score interval"
    elif not ci[0] < ci[1] or not ci[0] <= stat <= ci[1]:
        detail["reason"] = "the bootstrap interval is degenerate here, so the Wilson score interval"
    else:
        return ci, "bootstrap-basic", detail
    return wilson(stat, n_eff), "wilson", detail


def reference_interval(user_correct: np.ndarray, user_n: np.ndarray, stat: float | None, seed: int,
                       resamples: int = REFERENCE_RESAMPLES) -> tuple[list[float] | None, dict[str, Any]]:
    """The reference code's interval around the mean of per-user accuracies (see module doc).

    ``user_correct``/``user_n``: correct and total judgments per user (users with none
    are ignored). Resampling a user's ``n`` judgments with ``k`` correct draws a
    Binomial(n, k/n) count, so the replicates are drawn that way (same distribution as
    ``scipy.stats.bootstrap`` over each user's judgments, unpaired, at a fraction of
    the memory). Returns ``(interval or None, detail)``.
    """
    has = user_n > 0
    k, n = user_correct[has].astype(np.int64), user_n[has].astype(np.int64)
    detail: dict[str, Any] = {"unit": "judgment", "paired": False, "strata": "user", "statistic": "user_mean_accuracy",
                              "resamples": int(resamples), "method": "basic"}
    if stat is None or int(n.sum()) < MIN_UNITS:
        detail["reason"] = f"an interval needs at least {MIN_UNITS} judgments"
        return None, detail
    if resamples <= 0:
        detail["reason"] = "bootstrap disabled (0 resamples)"
        return None, detail
    p = k / n
    if np.all((p == 0) | (p == 1)):
        detail["reason"] = "every user's judgments all agree: the reference's bootstrap would be zero-width"
        return None, detail
    rng = np.random.default_rng([seed, 2])
    boot = np.empty(resamples)
    step = max(1, 2_000_000 // max(1, len(n)))
    for start in range(0, resamples, step):
        m = min(step, resamples - start)
        boot[start:start + m] = (rng.binomial(n, p, size=(m, len(n))) / n).mean(axis=1)
    return basic_bootstrap(stat, boot), detail


def difference_interval(diff: float, boot: np.ndarray, weights: np.ndarray, values: np.ndarray, unit: str,
                        resamples: int, *, identical: bool = False, **thresholds: Any
                        ) -> tuple[list[float] | None, str, dict[str, Any]]:
    """95% interval for a paired difference of accuracies ``diff`` in [-1, 1] (``prb compare``).

    ``boot``: bootstrap replicates of the difference over units; ``weights``: judgments per
    unit; ``values``: the difference per unit (shape: units). The module's rule is applied to
    ``t = (diff + 1) / 2``, a mean of per-unit shares in [0, 1] (a unit where the first run is
    right on every judgment and the second wrong counts 1, no difference 0.5), and mapped back
    with ``2t - 1``: when every unit favours one run the exact Clopper-Pearson interval, with
    few units or few units that differ from the most common one (few discordant pairs) the
    Wilson score interval, else the basic bootstrap. A share's variance never exceeds that of a
    0/1 outcome with its mean, so the binomial intervals are conservative here too.

    ``identical``: the two sides are the same run (every shared record equal, query ids
    included: ids are keyed by a per-run secret, so two runs never share them); the
    difference is then 0 by construction, on these pairs and any other, and the interval is
    ``[0, 0]`` (kind ``"identical"``). Returns ``(interval or None, kind, detail)``.
    """
    v = np.asarray(values, dtype=float)
    if identical:
        n_units = int(np.count_nonzero(np.asarray(weights) > 0))
        return [0.0, 0.0], "identical", {"unit": unit, "n_units": n_units, "scale": "difference",
                                         "reason": "the same run on both sides: the difference is 0 by construction"}
    ci, kind, detail = choose_interval((diff + 1) / 2, (np.asarray(boot) + 1) / 2, weights, unit, resamples,
                                       (v + 1) / 2, **thresholds)
    detail["scale"] = "(difference + 1) / 2"
    if kind == "clopper-pearson":
        n = detail["reason"].rsplit(" over ", 1)[-1]
        side = "first" if diff > 0 else "second"
        detail["reason"] = (f"the {side} run was right and the other wrong on every judgment: a bootstrap would be "
                            f"zero-width, so the exact Clopper-Pearson interval over {n}")
    if ci is None:
        return None, kind, detail
    return [max(-1.0, 2 * ci[0] - 1), min(1.0, 2 * ci[1] - 1)], kind, detail


def interval_note(kind: str, detail: dict[str, Any] | None) -> str:
    """A few words saying which interval the rule chose and why, for a printed line, e.g.
    ``"Wilson score: 40 users < 50, conservative"`` or ``"paired bootstrap"``; from ``kind`` and
    the ``detail`` :func:`choose_interval` / :func:`difference_interval` return (its ``unit``,
    ``n_effective`` and ``reason``). A conservative interval can be wide where a test on the same
    data is decisive: it covers at least 95% whatever the spread, so it is never narrower than the
    data allow."""
    d = detail or {}
    unit, reason, n_eff = str(d.get("unit") or "unit"), str(d.get("reason") or ""), d.get("n_effective")
    if kind == "bootstrap-basic":
        return "paired bootstrap" if d.get("scale") else "bootstrap"
    if kind == "wilson":
        if isinstance(n_eff, int | float) and n_eff < MIN_BOOTSTRAP_UNITS and "effective" in reason:
            why = f"{n_eff:.3g} {unit}s < {MIN_BOOTSTRAP_UNITS}"
        elif reason.startswith("only "):
            why = reason.split(":", 1)[0]  # "only 3 pairs differ from the most common pair result (< 10)"
        elif "disabled" in reason:
            why = "no bootstrap (--bootstrap 0)"
        else:
            why = "the bootstrap is degenerate here"
        return f"Wilson score: {why}, conservative"
    if kind == "clopper-pearson":
        head = reason.split(":", 1)[0]
        return f"exact Clopper-Pearson: {head}, conservative" if head else "exact Clopper-Pearson, conservative"
    if kind == "identical":
        return "the same run on both sides"
    return reason or kind

