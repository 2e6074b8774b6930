"""Coverage of each 95% interval kind with few units, side by side, by simulation with a known truth.

For each number of units n (5, 10, 20, 50, 100) and each true value, draws ``--reps`` data sets,
computes every interval kind on the same data, and prints the share of intervals that contain the
truth (coverage; nominal 0.95) and their mean width. With ``--reps 400`` a coverage's standard
error is about 1.1 points, so anything below 0.92 is a real shortfall.

Scenarios (each unit is what the harness resamples):

- ``pairs``: accuracy over pairs judged in both orders; a pair is right in both orders, in one,
  or in none (share 1, 0.5, 0) with probabilities (p - 0.05, 0.1, 0.95 - p): true accuracy p.
- ``users``: pooled accuracy over users (``accuracy_ci95_users``); each user has 8 judgments
  (4 pairs x 2 orders) correct with the user's own probability, drawn from Beta(10p, 10(1-p)).
- ``compare``: paired difference over pairs (``prb compare``'s ``ci95``): a pair favours the
  first run (right twice vs wrong twice) with q+, the second with q-, else both runs agree.

Kinds:

- ``old rule``: the harness before this change (basic bootstrap from 10 effective units, exact at
  0%/100%, Wilson below 10; for compare, the basic bootstrap always);
- ``basic``: scipy's bootstrap, method "basic", alone; ``BCa``: scipy's bias-corrected and
  accelerated bootstrap (``scipy.stats.bootstrap(method="BCa")``); a degenerate sample (every unit
  equal) gives scipy no interval, counted as the zero-width point;
- ``Wilson``: the Wilson score interval over the effective units (for compare: on (d + 1) / 2);
- ``harness``: what ``score()`` / ``paired_comparison()`` report now (the rule in
  :mod:`personalrewardbench.intervals`).

    python scripts/bench/bench_interval_coverage.py [--reps 400] [--resamples 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable

import numpy as np
from scipy.stats import bootstrap

from personalrewardbench.intervals import basic_bootstrap, choose_interval, wilson
from personalrewardbench.scoring import Judgments, paired_comparison, score_judgments

NS = (5, 10, 20, 50, 100)
KINDS = ("old rule", "basic", "BCa", "Wilson", "harness")
Interval = list[float] | None


def _scipy(values: np.ndarray, method: str, resamples: int, rng: np.random.Generator) -> Interval:
    """scipy's bootstrap interval of the mean of ``values`` (one value per unit, equal weights)."""
    if np.all(values == values[0]):
        return [float(values[0])] * 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = bootstrap((values,), np.mean, vectorized=True, n_resamples=resamples, method=method, rng=rng)
    lo, hi = res.confidence_interval
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return [float(values.mean())] * 2
    return [float(lo), float(hi)]


def _boot_means(values: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    idx = rng.integers(0, values.size, size=(resamples, values.size))
    return values[idx].mean(axis=1)


def _judgments(pair_user: np.ndarray, correct: np.ndarray) -> Judgments:
    """Pairs judged in both orders; ``correct`` (pairs x 2) says whether each judgment is right."""
    n_pairs = correct.shape[0]
    chosen_first = np.tile([True, False], n_pairs)
    right = correct.reshape(-1)
    p = np.where(chosen_first == right, 0.9, 0.1)  # right: > 0.5 when chosen is first, < 0.5 when second
    n_users = int(pair_user.max()) + 1
    return Judgments(user_ids=tuple(f"u{u:04d}" for u in range(n_users)),
                     pair_ids=tuple(f"p{k:05d}" for k in range(n_pairs)),
                     user=np.repeat(pair_user, 2), pair=np.repeat(np.arange(n_pairs), 2),
                     chosen_first=chosen_first, p=p)


def accuracy_case(scenario: str, n: int, truth: float, rng: np.random.Generator,
                  resamples: int) -> dict[str, Interval]:
    """Every kind's interval for one simulated data set of ``n`` units."""
    if scenario == "pairs":
        kind = rng.choice(3, size=n, p=[truth - 0.05, 0.1, 0.95 - truth])  # 0: both right, 1: one, 2: none
        correct = np.stack([kind == 0, kind <= 1], axis=1)
        flip = rng.random(n) < 0.5  # which order the half-right pairs got right
        correct[:, 0], correct[:, 1] = np.where(flip, correct[:, 1], correct[:, 0]), np.where(flip, correct[:, 0],
                                                                                                  correct[:, 1])
        j, key, values = _judgments(np.arange(n), correct), "accuracy_ci95", correct.mean(axis=1)
    else:
        pairs_per_user = 4
        p_user = rng.beta(10 * truth, 10 * (1 - truth), size=n)
        correct = rng.random((n * pairs_per_user, 2)) < np.repeat(p_user, pairs_per_user)[:, None]
        j = _judgments(np.repeat(np.arange(n), pairs_per_user), correct)
        key, values = "accuracy_ci95_users", correct.reshape(n, -1).mean(axis=1)
    stat = float(values.mean())
    boot = _boot_means(values, resamples, rng)
    weights = np.full(n, 2.0 if scenario == "pairs" else 8.0)
    old, _, _ = choose_interval(stat, boot, weights, "unit", resamples, values, min_bootstrap_units=10,
                                min_off_mode=0)
    seed = int(rng.integers(1 << 31))
    return {"old rule": old, "basic": basic_bootstrap(stat, boot),
            "BCa": _scipy(values, "BCa", resamples, rng), "Wilson": wilson(stat, n),
            "harness": score_judgments(j, resamples=resamples, seed=seed)["scores"][key]}


def _both(run: str, pair: str, right: bool) -> list[dict]:
    """A pair's two judgments in one run (query ids differ between runs, as each run keys its own)."""
    first, second = (0.9, 0.1) if right else (0.1, 0.9)
    return [{"query_id": f"{run}{pair}/1", "pair_id": pair, "user_id": f"user-{pair}", "order": "chosen_first",
             "p": first},
            {"query_id": f"{run}{pair}/2", "pair_id": pair, "user_id": f"user-{pair}", "order": "chosen_second",
             "p": second}]


def compare_case(n: int, q_plus: float, q_minus: float, rng: np.random.Generator,
                 resamples: int) -> dict[str, Interval]:
    """Every kind's interval for one simulated paired comparison over ``n`` pairs."""
    x = rng.choice([1.0, -1.0, 0.0], size=n, p=[q_plus, q_minus, 1 - q_plus - q_minus])
    agree_right = rng.random(n) < 0.7
    a, b = [], []
    for k, v in enumerate(x):
        a += _both("a", f"p{k}", v > 0 or (v == 0 and agree_right[k]))
        b += _both("b", f"p{k}", v < 0 or (v == 0 and agree_right[k]))
    d = float(x.mean())
    boot = _boot_means(x, resamples, rng)
    old = basic_bootstrap((d + 1) / 2, (boot + 1) / 2)
    w = wilson((d + 1) / 2, n)
    bca = _scipy(x, "BCa", resamples, rng)
    cmp = paired_comparison(a, b, resamples=resamples, seed=int(rng.integers(1 << 31)))
    return {"old rule": [2 * old[0] - 1, 2 * old[1] - 1] if old else None, "basic": [2 * old[0] - 1, 2 * old[1] - 1]
            if old else None, "BCa": bca, "Wilson": [2 * w[0] - 1, 2 * w[1] - 1], "harness": cmp["ci95"]}


def table(title: str, truths: list[tuple[str, float]], draw: Callable[[int, int, np.random.Generator], dict],
          reps: int, seed: int) -> None:
    print(f"\n{title}")
    print(f"{'n':>4} {'truth':>12} | " + " | ".join(f"{k:>16}" for k in KINDS))
    print(f"{'':>4} {'':>12} | " + " | ".join(f"{'cover  width':>16}" for _ in KINDS))
    for n in NS:
        for i, (label, truth) in enumerate(truths):
            rng = np.random.default_rng([seed, n, i])
            hits = dict.fromkeys(KINDS, 0)
            width = dict.fromkeys(KINDS, 0.0)
            for _ in range(reps):
                got = draw(n, i, rng)
                for k in KINDS:
                    ci = got[k]
                    if ci is not None:
                        hits[k] += ci[0] - 1e-12 <= truth <= ci[1] + 1e-12
                        width[k] += ci[1] - ci[0]
                    else:
                        hits[k] += 1  # no interval claims nothing; shown as full width
                        width[k] += 1.0 if title.startswith("accuracy") else 2.0
            print(f"{n:>4} {label:>12} | " + " | ".join(f"{hits[k] / reps:>6.3f} {width[k] / reps:>8.3f}"
                                                         for k in KINDS))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=400)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    accs = [0.6, 0.85, 0.95]
    for scenario in ("pairs", "users"):
        table(f"accuracy, unit = {scenario[:-1]} ({'shares 1/0.5/0' if scenario == 'pairs' else '8 judgments each'})",
              [(f"acc {p:.2f}", p) for p in accs],
              lambda n, i, rng, s=scenario: accuracy_case(s, n, accs[i], rng, args.resamples), args.reps, args.seed)
    diffs = [(0.2, 0.1), (0.04, 0.0), (0.1, 0.1), (1.0, 0.0)]
    table("compare (paired difference over pairs; truth = q+ - q-)",
          [(f"{qp:.2f}-{qm:.2f}", qp - qm) for qp, qm in diffs],
          lambda n, i, rng: compare_case(n, *diffs[i], rng, args.resamples), args.reps, args.seed)
    print(f"\n{args.reps} data sets per row, {args.resamples} bootstrap resamples; "
          f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
