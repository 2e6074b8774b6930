"""The one scorer: paper accuracy, bootstrap CIs, per-user figures, paired comparison.

Accuracy follows the SynthesizeMe paper: every test pair is judged twice (chosen
response shown first, then second); a judgment is correct when it puts more than
half the probability on the chosen response. A probability of exactly 0.5 (tie)
or a failed judgment (``None``) counts as wrong.

Figures (all fractions in [0, 1]):

- ``accuracy``: pooled over all judgments; ``accuracy_ci95`` bootstraps pairs
  (both judgments of a pair move together), ``accuracy_ci95_users`` bootstraps
  users (the honest interval for per-user data).
- ``user_mean_accuracy``: the mean of per-user accuracies (users with no test
  judgments are left out of it), with a bootstrap over users.
- ``position_consistency``: share of pairs (judged in both orders) whose two
  judgments prefer the same response. Ties and failures are inconsistent.

Which interval each figure carries (bootstrap, exact Clopper-Pearson, Wilson score,
or none with a reason) follows the rule in :mod:`personalrewardbench.intervals`
and is recorded in ``ci_kind`` / ``ci_detail``; ``user_mean_accuracy_ci95_reference``
is the reference code's narrower kind (judgments resampled within users), an extra
figure. Bootstrap intervals use scipy's "basic" method (the reference code's choice),
clipped to [0, 1], with ``resamples`` draws from generators seeded by ``seed``.
The pair bootstrap is exact and vectorized: a resample's total depends only on
how many pairs of each (correct, judged) kind it draws, which is multinomial.
Users are resampled from the user list sorted by id, so every figure is
independent of input order, batch size and sharding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from personalrewardbench.intervals import REFERENCE_RESAMPLES, choose_interval, difference_interval, reference_interval
from personalrewardbench.methods import MethodError

ORDERS = ("chosen_first", "chosen_second")
CI_METHOD = "basic"
SIGN_TEST = "two-sided exact sign test over pairs whose numbers of correct judgments differ"


class ScoringError(MethodError, ValueError):
    """Predictions that cannot be scored (duplicates, bad probabilities, unknown order)."""


@dataclass(frozen=True)
class Judgments:
    """Column arrays of scored judgments. ``p`` is NaN for a failed judgment."""

    user_ids: tuple[str, ...]  # sorted; index space of ``user``
    pair_ids: tuple[str, ...]  # index space of ``pair``
    user: np.ndarray  # int, per judgment
    pair: np.ndarray  # int, per judgment
    chosen_first: np.ndarray  # bool, per judgment
    p: np.ndarray  # float, per judgment

    @property
    def n(self) -> int:
        return int(self.p.shape[0])


def check_probability(value: Any, where: str) -> float | None:
    """A prediction as float or None; raises ScoringError naming ``where`` otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ScoringError(f"{where}: prediction {value!r} is not a number or None; return P(first preferred) in [0, 1]")
    v = float(value)
    if math.isnan(v) or v < 0.0 or v > 1.0:
        raise ScoringError(f"{where}: prediction {v!r} is outside [0, 1]; return P(first preferred), or None for a failure")
    return v


def _probabilities(values: list[Any], where: Callable[[int], str]) -> np.ndarray:
    """Validated probabilities as floats (NaN for None); the error names the first bad one."""
    if set(map(type, values)) <= {float, int, type(None)}:
        p = np.array(values, dtype=float)  # None -> NaN
        bad = (p < 0) | (p > 1)
        if np.isnan(p).sum() != values.count(None) or bad.any():
            nan_floats = np.isnan(p) & np.array([v is not None for v in values], dtype=bool)
            i = int(np.nonzero(bad | nan_floats)[0][0])
            check_probability(values[i], where(i))
        return p
    for i, v in enumerate(values):
        check_probability(v, where(i))
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def judgments_from_records(records: Iterable[Mapping[str, Any]], users: Iterable[str] = (),
                           label: str = "prediction") -> Judgments:
    """Build :class:`Judgments` from predictions.jsonl-shaped records (vectorized checks).

    ``users`` adds users that have no judgments (reported with accuracy None).
    """
    recs = records if isinstance(records, list) else list(records)
    try:
        pid = [str(r["pair_id"]) for r in recs]
        uid = [str(r["user_id"]) for r in recs]
        order = np.array([r["order"] for r in recs], dtype=object)
        p = _probabilities([r["p"] for r in recs], lambda i: f"{label} {i + 1} (query {recs[i].get('query_id')})")
    except KeyError as exc:
        raise ScoringError(f"{label}s: a record lacks the field {exc}; each needs pair_id, user_id, order, p") from None
    chosen_first = order == "chosen_first"
    bad = ~(chosen_first | (order == "chosen_second"))
    if bad.any():
        i = int(np.nonzero(bad)[0][0])
        raise ScoringError(f"{label} {i + 1} (query {recs[i].get('query_id')}): order {order[i]!r} is not one of {ORDERS}")
    extra = [str(u) for u in users]
    u_all, user = np.unique(np.array(uid + extra, dtype=str), return_inverse=True)
    user = user[: len(uid)].astype(np.int64)
    pair_arr, pair = np.unique(np.array(pid, dtype=str), return_inverse=True)
    pair = pair.astype(np.int64)
    user_ids, pair_ids = tuple(u_all.tolist()), tuple(pair_arr.tolist())
    slot = pair * 2 + chosen_first
    counts = np.bincount(slot, minlength=2 * len(pair_ids))
    if counts.size and counts.max() > 1:
        k = int(np.argmax(counts))
        i = int(np.nonzero(slot == k)[0][1])
        raise ScoringError(f"{label} {i + 1}: pair {pair_ids[k // 2]} is judged twice in order {order[i]}")
    pair_user = np.full(len(pair_ids), -1, dtype=np.int64)
    pair_user[pair] = user
    if len(pair) and np.any(pair_user[pair] != user):
        bad_pair = pair_ids[int(pair[np.nonzero(pair_user[pair] != user)[0][0]])]
        raise ScoringError(f"pair {bad_pair} appears under two different users")
    return Judgments(user_ids, pair_ids, user, pair, chosen_first.astype(bool), p)


def _rngs(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    return np.random.default_rng([seed, 0]), np.random.default_rng([seed, 1])


def _pair_bootstrap(columns: np.ndarray, rng: np.random.Generator, resamples: int) -> np.ndarray:
    """Exact pair bootstrap: ``columns`` (pairs x k ints); returns (resamples x k) resampled column sums."""
    n_pairs = columns.shape[0]
    if n_pairs == 0 or resamples <= 0:
        return np.zeros((0, columns.shape[1]))
    kinds, counts = np.unique(columns, axis=0, return_counts=True)
    draws = rng.multinomial(n_pairs, counts / n_pairs, size=resamples)
    return draws @ kinds


def score_judgments(
    j: Judgments,
    *,
    resamples: int = 1000,
    seed: int = 0,
    user_extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Scores and per-user figures for ``j``. ``user_extra`` adds fields (n_train, n_val) per user."""
    correct = np.where(j.chosen_first, j.p > 0.5, j.p < 0.5)
    wrong_way = np.where(j.chosen_first, j.p < 0.5, j.p > 0.5)
    ties = j.p == 0.5
    failed = np.isnan(j.p)
    n_pairs_all = len(j.pair_ids)
    n_users_all = len(j.user_ids)

    pc = np.bincount(j.pair, weights=correct, minlength=n_pairs_all).astype(np.int64)
    pn = np.bincount(j.pair, minlength=n_pairs_all).astype(np.int64)
    pw = np.bincount(j.pair, weights=wrong_way, minlength=n_pairs_all).astype(np.int64)
    pcf = np.bincount(j.pair, weights=j.chosen_first, minlength=n_pairs_all).astype(np.int64)
    both = (pn == 2) & (pcf == 1)
    n_both = int(both.sum())
    consistent = both & ((pc == 2) | (pw == 2))
    position_consistency = float(consistent.sum() / n_both) if n_both else None

    uc = np.bincount(j.user, weights=correct, minlength=n_users_all).astype(float)
    un = np.bincount(j.user, minlength=n_users_all).astype(np.int64)
    ut = np.bincount(j.user, weights=ties, minlength=n_users_all).astype(np.int64)
    uf = np.bincount(j.user, weights=failed, minlength=n_users_all).astype(np.int64)
    pair_user = np.zeros(n_pairs_all, dtype=np.int64)
    pair_user[j.pair] = j.user
    up = np.bincount(pair_user, minlength=n_users_all) if n_pairs_all else np.zeros(n_users_all, dtype=np.int64)

    n = j.n
    accuracy = float(correct.sum() / n) if n else None
    has = un > 0
    user_acc = np.divide(uc, un, out=np.zeros_like(uc), where=has)
    user_mean = float(user_acc[has].mean()) if has.any() else None

    rng_pairs, rng_users = _rngs(seed)
    sums = _pair_bootstrap(np.stack([pc, pn], axis=1), rng_pairs, resamples)
    boot_pairs = sums[:, 0] / sums[:, 1] if sums.size else np.zeros(0)
    U = int(has.sum())
    if U and resamples > 0:
        idx = rng_users.integers(0, U, size=(resamples, U))
        c_u, n_u, a_u = uc[has], un[has], user_acc[has]
        boot_users_pooled = c_u[idx].sum(axis=1) / n_u[idx].sum(axis=1)
        boot_users_mean = a_u[idx].mean(axis=1)
    else:
        boot_users_pooled = boot_users_mean = np.zeros(0)

    per_user: dict[str, dict[str, Any]] = {}
    for k, uid in enumerate(j.user_ids):
        row: dict[str, Any] = {
            "accuracy": float(user_acc[k]) if has[k] else None,
            "n_pairs": int(up[k]),
            "n_judgments": int(un[k]),
            "n_correct": int(uc[k]),
            "n_ties": int(ut[k]),
            "n_failed": int(uf[k]),
        }
        if user_extra and uid in user_extra:
            row.update(user_extra[uid])
        per_user[uid] = row

    pair_acc = np.divide(pc, pn, out=np.zeros(n_pairs_all), where=pn > 0)
    ci_pairs, kind_pairs, det_pairs = choose_interval(accuracy, boot_pairs, pn, "pair", resamples, pair_acc)
    ci_users, kind_users, det_users = choose_interval(accuracy, boot_users_pooled, un, "user", resamples, user_acc)
    ci_mean, kind_mean, det_mean = choose_interval(user_mean, boot_users_mean, has.astype(float), "user", resamples,
                                                   user_acc)
    ci_ref, det_ref = reference_interval(uc, un, user_mean, seed, REFERENCE_RESAMPLES if resamples > 0 else 0)
    scores = {
        "accuracy": accuracy,
        "accuracy_ci95": ci_pairs,
        "accuracy_ci95_users": ci_users,
        "user_mean_accuracy": user_mean,
        "user_mean_accuracy_ci95": ci_mean,
        "user_mean_accuracy_ci95_reference": ci_ref,
        "ci_kind": {"accuracy_ci95": kind_pairs, "accuracy_ci95_users": kind_users,
                    "user_mean_accuracy_ci95": kind_mean,
                    "user_mean_accuracy_ci95_reference": "reference-bootstrap-basic" if ci_ref else "none"},
        "ci_detail": {"accuracy_ci95": det_pairs, "accuracy_ci95_users": det_users,
                      "user_mean_accuracy_ci95": det_mean, "user_mean_accuracy_ci95_reference": det_ref},
        "position_consistency": position_consistency,
        "n_judgments": n,
        "n_correct": int(correct.sum()),
        "n_pairs": n_pairs_all,
        "n_users": U,
        "n_ties": int(ties.sum()),
        "n_failed": int(failed.sum()),
        "bootstrap": {"resamples": int(resamples), "seed": int(seed), "method": CI_METHOD},
    }
    return {"scores": scores, "per_user": per_user}


def score(
    records: Iterable[Mapping[str, Any]],
    *,
    users: Iterable[str] = (),
    resamples: int = 1000,
    seed: int = 0,
    user_extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Score predictions.jsonl-shaped records (``pair_id``, ``user_id``, ``order``, ``p``).

    Returns ``{"scores": {...}, "per_user": {...}}`` as written to results.json.
    """
    return score_judgments(judgments_from_records(records, users), resamples=resamples, seed=seed,
                           user_extra=user_extra)


def sign_test(wins_a: int, wins_b: int) -> float:
    """Two-sided exact sign test: P(a split at least this uneven | both equally likely).

    For the symmetric binomial, twice the smaller tail (capped at 1); equals scipy's
    ``binomtest(wins_a, wins_a + wins_b, 0.5).pvalue``.
    """
    n = wins_a + wins_b
    if n == 0:
        return 1.0
    m = min(wins_a, wins_b)
    i = np.arange(1, m + 1)
    log_c = np.concatenate([[0.0], np.cumsum(np.log((n - i + 1) / i))])  # log C(n, 0..m)
    top = log_c.max()
    log_tail = top + math.log(np.exp(log_c - top).sum()) - n * math.log(2)
    return float(min(1.0, 2 * math.exp(log_tail)))


def paired_comparison(
    a: Iterable[Mapping[str, Any]],
    b: Iterable[Mapping[str, Any]],
    *,
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Compare two methods' predictions on the judgments they share (matched by pair and order).

    ``difference`` = accuracy(a) - accuracy(b) on the shared judgments, with paired 95%
    CIs over pairs (``ci95``) and over users (``ci95_users``) chosen by
    :func:`~personalrewardbench.intervals.difference_interval` (exact or Wilson score on
    ``(difference + 1) / 2`` when every pair favours one run, with few units or few
    discordant pairs; else the paired basic bootstrap; ``[0, 0]`` only for a run compared
    with itself), recorded in ``ci_kind``/``ci_detail``, and a p-value from a two-sided exact
    sign test over pairs (``wins_a``: pairs where a has more correct judgments than b).
    """
    a = a if isinstance(a, list) else list(a)
    b = b if isinstance(b, list) else list(b)
    identical = a is b or a == b  # the same run: query ids come from a per-run secret
    ja = judgments_from_records(a, label="first run's prediction")
    jb = judgments_from_records(b, label="second run's prediction")
    pair_ids = sorted(set(ja.pair_ids) & set(jb.pair_ids))
    index = {q: k for k, q in enumerate(pair_ids)}
    P = len(pair_ids)

    def table(j: Judgments) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """p and user per (shared pair, order) slot, and which slots this run judged."""
        remap = np.array([index.get(q, -1) for q in j.pair_ids], dtype=np.int64)
        k = remap[j.pair] if len(j.pair) else np.zeros(0, dtype=np.int64)
        keep = k >= 0
        slot = k[keep] * 2 + j.chosen_first[keep]
        p = np.full(2 * P, np.nan)
        p[slot] = j.p[keep]
        has = np.zeros(2 * P, dtype=bool)
        has[slot] = True
        users = np.array(j.user_ids, dtype=object)[j.user[keep]] if len(j.user_ids) else np.zeros(0, dtype=object)
        u = np.full(2 * P, None, dtype=object)
        u[slot] = users
        return p, has, u

    pa_all, has_a, ua = table(ja)
    pb_all, has_b, ub = table(jb)
    shared = has_a & has_b
    if not shared.any():
        raise ScoringError("the two runs share no judged pairs; compare runs on the same benchmark and users")
    mismatch = shared & (ua != ub)
    if mismatch.any():
        k = int(np.nonzero(mismatch)[0][0])
        raise ScoringError(f"pair {pair_ids[k // 2]} belongs to user {ua[k]} in one run and {ub[k]} in the other")
    slots = np.nonzero(shared)[0]
    pair = slots // 2
    cf = (slots % 2).astype(bool)
    pa, pb = pa_all[slots], pb_all[slots]
    user_ids = sorted(set(ua[slots]))
    u_index = {u: i for i, u in enumerate(user_ids)}
    user = np.fromiter(map(u_index.__getitem__, ua[slots]), dtype=np.int64, count=len(slots))
    ca = np.where(cf, pa > 0.5, pa < 0.5)
    cb = np.where(cf, pb > 0.5, pb < 0.5)
    U, N = len(user_ids), len(slots)
    pca = np.bincount(pair, weights=ca, minlength=P).astype(np.int64)
    pcb = np.bincount(pair, weights=cb, minlength=P).astype(np.int64)
    pn = np.bincount(pair, minlength=P).astype(np.int64)
    judged = pn > 0
    pca, pcb, pn = pca[judged], pcb[judged], pn[judged]
    acc_a, acc_b = float(ca.sum() / N), float(cb.sum() / N)
    diff = acc_a - acc_b

    rng_pairs, rng_users = _rngs(seed)
    sums = _pair_bootstrap(np.stack([pca - pcb, pn], axis=1), rng_pairs, resamples)
    boot_pairs = sums[:, 0] / sums[:, 1] if sums.size else np.zeros(0)
    ud = np.bincount(user, weights=ca.astype(float) - cb, minlength=U)
    un = np.bincount(user, minlength=U)
    if resamples > 0:
        idx = rng_users.integers(0, U, size=(resamples, U))
        boot_users = ud[idx].sum(axis=1) / un[idx].sum(axis=1)
    else:
        boot_users = np.zeros(0)
    wins_a, wins_b = int((pca > pcb).sum()), int((pcb > pca).sum())
    p_value = sign_test(wins_a, wins_b)
    ci_p, kind_p, det_p = difference_interval(diff, boot_pairs, pn, (pca - pcb) / pn, "pair", resamples,
                                              identical=identical)
    ci_u, kind_u, det_u = difference_interval(diff, boot_users, un, ud / np.maximum(un, 1), "user", resamples,
                                              identical=identical)
    return {
        "accuracy_a": acc_a,
        "accuracy_b": acc_b,
        "difference": diff,
        "ci95": ci_p,
        "ci95_users": ci_u,
        "ci_kind": {"ci95": kind_p, "ci95_users": kind_u},
        "ci_detail": {"ci95": det_p, "ci95_users": det_u},
        "p_value": p_value,
        "p_value_test": SIGN_TEST,
        "wins_a": wins_a,
        "wins_b": wins_b,
        "n_judgments": N,
        "n_pairs": int(judged.sum()),
        "n_users": U,
        "n_only_a": int(ja.n - N),
        "n_only_b": int(jb.n - N),
        "bootstrap": {"resamples": int(resamples), "seed": int(seed), "method": CI_METHOD},
    }
