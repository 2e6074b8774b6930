"""embed-direction: a per-user preference direction in sentence-embedding space (example submission)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from personalrewardbench import Method, Query, UserHistory
from personalrewardbench.data.schema import Context


def _with_context(context: Context, response: str, use: bool) -> str:
    if not use:
        return response
    last_user = next((m.content for m in reversed(context) if m.role == "user"), "")
    return f"{last_user}\n\n{response}"


class EmbedDirection(Method):
    name = "embed-direction"
    capabilities = frozenset({"personalized"})

    def __init__(self, prior_weight: float = 8.0, scale: float = 20.0, with_context: bool = False,
                 personalize: bool = True) -> None:
        self.prior_weight = prior_weight
        self.scale = scale
        self.with_context = with_context
        self.personalize = personalize  # False: every user gets the population's direction (the control)
        self._directions: dict[str, np.ndarray] = {}
        self._population: np.ndarray | None = None
        self._counts: dict[str, int] = {}
        self._cache = None

    def _embed(self, texts: list[str]) -> np.ndarray:
        if self._cache is None:
            from personalrewardbench.rewardmodel.embeddings import EmbeddingCache

            self._cache = EmbeddingCache(self.env.cache_dir, device=self.env.device,
                                         show_progress=self.env.show_progress)
        return self._cache.embed(texts)

    def fit(self, histories: Sequence[UserHistory]) -> None:
        pairs = [(h.user_id, p) for h in histories for p in (*h.train, *h.val)]
        if not pairs:
            return
        chosen = self._embed([_with_context(p.context, p.chosen, self.with_context) for _, p in pairs])
        rejected = self._embed([_with_context(p.context, p.rejected, self.with_context) for _, p in pairs])
        diffs = chosen - rejected
        self._population = diffs.mean(axis=0)
        sums: dict[str, np.ndarray] = {}
        for (uid, _), d in zip(pairs, diffs, strict=True):
            sums[uid] = sums.get(uid, 0) + d
            self._counts[uid] = self._counts.get(uid, 0) + 1
        k = self.prior_weight
        for uid, total in sums.items():
            n = self._counts[uid]
            self._directions[uid] = (total + k * self._population) / (n + k) if self.personalize else self._population

    def predict(self, queries: Sequence[Query]) -> list[float]:
        if not queries:
            return []
        first = self._embed([_with_context(q.context, q.first, self.with_context) for q in queries])
        second = self._embed([_with_context(q.context, q.second, self.with_context) for q in queries])
        dim = first.shape[1]
        fallback = self._population if self._population is not None else np.zeros(dim, dtype=np.float32)
        directions = np.stack([self._directions.get(q.user_id, fallback) for q in queries])
        margin = self.scale * np.einsum("ij,ij->i", first - second, directions)
        return [float(p) for p in 1.0 / (1.0 + np.exp(-margin))]

    def artifacts(self) -> dict[str, str]:
        return {uid: f"{self._counts.get(uid, 0)} pairs; direction norm {float(np.linalg.norm(d)):.4f}"
                for uid, d in sorted(self._directions.items())}
