"""A global logistic regression plus per-user offsets shrunk towards it (embed-logreg's model).

Every row is one labeled comparison, oriented winner-first, with antisymmetric features
x(a, b) = -x(b, a), so there is no intercept and P(a > b) = 1 - P(b > a).

1. Global: ``w`` = scikit-learn LogisticRegression (L2, no intercept) on all users' rows, each
   row used in both orientations; ``C`` picked from ``C_grid`` by validation log-loss.
2. Per user u: an offset ``d_u`` on the same features, fitted with the global logit as a fixed
   offset:  min_d  sum_i log(1 + exp(-(w.x_i + d.x_i))) + (lam / 2) ||d||^2
   so the user model is w + d_u, pulled towards w with strength ``lam`` (lam = inf: global only).
   Solved exactly by Newton's method in the dual (d = X_u^T a, n_u unknowns), cheap for the few
   pairs a user has. ``lam`` is picked from ``lam_grid`` (plus inf) by validation log-loss over all
   users' val rows, with per-user fits on train only.
3. Final: both refitted on train + val with the picked C and lam. Users unseen in fit get w.
Features are divided by their root mean square on the training rows (no centring: keeps the
antisymmetry).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def fit_offset(X: np.ndarray, z: np.ndarray, lam: float, iters: int = 30, tol: float = 1e-8) -> np.ndarray:
    """The per-user offset d minimising sum softplus(-(z + X d)) + lam/2 ||d||^2 (rows labeled 1)."""
    n = X.shape[0]
    if n == 0 or not math.isfinite(lam):
        return np.zeros(X.shape[1])
    K = X @ X.T
    alpha = np.zeros(n)

    def objective(a: np.ndarray) -> float:
        return float(np.sum(softplus(-(z + K @ a))) + 0.5 * lam * a @ K @ a)

    cur = objective(alpha)
    for _ in range(iters):
        m = z + K @ alpha
        p = 1.0 / (1.0 + np.exp(-m))
        w = p * (1.0 - p)
        step = np.linalg.solve(w[:, None] * K + lam * np.eye(n), -((p - 1.0) + lam * alpha))
        t = 1.0
        while t > 1e-4:
            new = objective(alpha + t * step)
            if new <= cur + 1e-12:
                break
            t *= 0.5
        alpha = alpha + t * step
        done = cur - new < tol * max(1.0, abs(cur))
        cur = new
        if done:
            break
    return X.T @ alpha


def _group(users: Sequence[str]) -> dict[str, np.ndarray]:
    idx: dict[str, list[int]] = {}
    for i, u in enumerate(users):
        idx.setdefault(u, []).append(i)
    return {u: np.asarray(v) for u, v in idx.items()}


def _log_loss(logits: np.ndarray) -> float:
    return float(np.mean(softplus(-logits))) if len(logits) else 0.0


class HierarchicalLogReg:
    """``fit(X_train, users_train, X_val, users_val)`` then ``logits(X, users)``; rows winner-first."""

    def __init__(self, C_grid: Sequence[float] = (0.1, 1.0, 10.0), lam_grid: Sequence[float] = (1.0, 4.0, 16.0, 64.0),
                 personalize: bool = True, max_iter: int = 1000) -> None:
        self.C_grid, self.lam_grid = list(C_grid), list(lam_grid)
        self.personalize, self.max_iter = personalize, max_iter
        self.scale: np.ndarray | None = None
        self.w: np.ndarray | None = None
        self.offsets: dict[str, np.ndarray] = {}
        self.C: float | None = None
        self.lam: float = math.inf
        self.selection: dict[str, dict[str, float]] = {"C": {}, "lam": {}}

    def _global(self, X: np.ndarray, C: float) -> np.ndarray:
        from sklearn.linear_model import LogisticRegression

        both = np.vstack([X, -X])
        y = np.r_[np.ones(len(X)), np.zeros(len(X))]
        clf = LogisticRegression(C=C, fit_intercept=False, max_iter=self.max_iter)
        clf.fit(both, y)
        return clf.coef_[0].astype(np.float64)

    def _offsets(self, X: np.ndarray, users: Sequence[str], w: np.ndarray, lam: float) -> dict[str, np.ndarray]:
        z = X @ w
        return {u: fit_offset(X[ix], z[ix], lam) for u, ix in _group(users).items()}

    def fit(self, X_train: np.ndarray, users_train: Sequence[str], X_val: np.ndarray | None = None,
            users_val: Sequence[str] | None = None, progress: bool = False) -> HierarchicalLogReg:
        """Pick C, then lambda, on the val rows (if any); refit on train + val. ``progress``: a bar over the fits."""
        from tqdm.auto import tqdm

        if len(X_train) == 0:
            raise ValueError("no training rows")
        has_val = X_val is not None and len(X_val) > 0
        n_fits = 1 + (len(self.C_grid) + (len(self.lam_grid) if self.personalize else 0) if has_val else 0)
        bar = tqdm(total=n_fits, desc="logistic regression fits", unit="fit", disable=None if progress else True, leave=False)
        X_all = np.vstack([X_train, X_val]) if has_val else X_train
        self.scale = np.sqrt(np.mean(X_train**2, axis=0)) + 1e-8
        Xt = X_train / self.scale
        if has_val:
            Xv, uv = X_val / self.scale, list(users_val or [])
            best = None
            for C in self.C_grid:
                w = self._global(Xt, C)
                bar.update()
                loss = _log_loss(Xv @ w)
                self.selection["C"][str(C)] = loss
                if best is None or loss < best[0]:
                    best = (loss, C, w)
            _, self.C, w = best
            self.lam, best_loss = math.inf, best[0]
            self.selection["lam"]["inf"] = best_loss
            if self.personalize:
                base = Xv @ w
                for lam in self.lam_grid:
                    off = self._offsets(Xt, users_train, w, lam)
                    bar.update()
                    extra = np.array([Xv[i] @ off[u] if u in off else 0.0 for i, u in enumerate(uv)])
                    loss = _log_loss(base + extra)
                    self.selection["lam"][str(lam)] = loss
                    if loss < best_loss - 1e-12:
                        self.lam, best_loss = lam, loss
        else:
            self.C = 1.0 if 1.0 in self.C_grid else self.C_grid[len(self.C_grid) // 2]
            self.lam = self.lam_grid[len(self.lam_grid) // 2] if self.personalize else math.inf
        users_all = list(users_train) + (list(users_val or []) if has_val else [])
        Xa = X_all / self.scale
        self.w = self._global(Xa, self.C)
        self.offsets = self._offsets(Xa, users_all, self.w, self.lam) if math.isfinite(self.lam) else {}
        bar.update()
        bar.close()
        return self

    def logits(self, X: np.ndarray, users: Sequence[str]) -> np.ndarray:
        if self.w is None or self.scale is None:
            raise RuntimeError("fit first")
        Xs = X / self.scale
        out = Xs @ self.w
        for u, ix in _group(users).items():
            if u in self.offsets:
                out[ix] += Xs[ix] @ self.offsets[u]
        return out
