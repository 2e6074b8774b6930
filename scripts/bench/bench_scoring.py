"""Benchmark the scorer: 1,000,000 judgments across 1,000 users, 1,000 bootstrap resamples.

Target: under 5 s for the scoring itself (figures, pair and user bootstraps, per-user table).
Prints the time from column arrays (what the evaluator scores) and from predictions.jsonl-shaped
records (what `prb verify` reads, including building the arrays), plus a paired comparison.

    python scripts/bench/bench_scoring.py [--judgments 1000000] [--users 1000] [--resamples 1000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from personalrewardbench.scoring import Judgments, judgments_from_records, paired_comparison, score_judgments


def make(n_judgments: int, n_users: int, seed: int = 0) -> Judgments:
    rng = np.random.default_rng(seed)
    n_pairs = n_judgments // 2
    pair = np.repeat(np.arange(n_pairs), 2)
    pair_user = np.sort(rng.integers(0, n_users, n_pairs))
    p = rng.random(2 * n_pairs)
    p[rng.random(p.size) < 0.01] = 0.5
    p[rng.random(p.size) < 0.01] = np.nan
    return Judgments(user_ids=tuple(f"user{u:05d}" for u in range(n_users)),
                     pair_ids=tuple(f"pair{k:07d}" for k in range(n_pairs)),
                     user=pair_user[pair], pair=pair, chosen_first=np.tile([True, False], n_pairs), p=p)


def to_records(j: Judgments) -> list[dict]:
    orders = np.where(j.chosen_first, "chosen_first", "chosen_second")
    ps = [None if np.isnan(x) else float(x) for x in j.p]
    return [{"query_id": str(i), "pair_id": j.pair_ids[k], "user_id": j.user_ids[u], "order": o, "p": p}
            for i, (k, u, o, p) in enumerate(zip(j.pair.tolist(), j.user.tolist(), orders.tolist(), ps, strict=True))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--judgments", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--resamples", type=int, default=1000)
    args = ap.parse_args()
    j = make(args.judgments, args.users)
    print(f"{j.n:,} judgments, {len(j.pair_ids):,} pairs, {len(j.user_ids):,} users, {args.resamples} resamples")

    t = time.perf_counter()
    out = score_judgments(j, resamples=args.resamples, seed=0)
    t_arrays = time.perf_counter() - t
    s = out["scores"]
    print(f"score (arrays):            {t_arrays:6.2f} s   accuracy {s['accuracy']:.4f} CI {s['accuracy_ci95']} "
          f"users-CI {s['accuracy_ci95_users']}")

    recs = to_records(j)
    t = time.perf_counter()
    j2 = judgments_from_records(recs)
    score_judgments(j2, resamples=args.resamples, seed=0)
    t_records = time.perf_counter() - t
    print(f"score (records -> arrays): {t_records:6.2f} s")

    other = [dict(r, p=(None if r["p"] is None else 1.0 - r["p"])) for r in recs[: len(recs) // 10]]
    t = time.perf_counter()
    cmp = paired_comparison(recs[: len(recs) // 10], other, resamples=args.resamples)
    print(f"paired comparison ({len(other):,} judgments): {time.perf_counter() - t:6.2f} s   "
          f"difference {cmp['difference']:+.4f} CI {cmp['ci95']} p={cmp['p_value']:.3g}")
    print(f"target < 5 s (arrays): {'MET' if t_arrays < 5 else 'MISSED'}")


if __name__ == "__main__":
    main()
