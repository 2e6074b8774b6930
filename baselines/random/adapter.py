"""Random baseline: a seeded coin per query, independent of batch size, order and sharding."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from personalrewardbench.data.schema import Query
from personalrewardbench.methods import Method


class RandomBaseline(Method):
    name = "random"
    capabilities = frozenset()

    def predict(self, queries: Sequence[Query]) -> list[float]:
        seed = self.env.seed if hasattr(self, "env") else 0
        return [self._coin(seed, q) for q in queries]

    @staticmethod
    def _coin(seed: int, q: Query) -> float:
        h = hashlib.sha256(f"random-baseline\0{seed}\0{q.user_id}".encode())
        for m in q.context:
            h.update(f"\0{m.role}\0{m.content}".encode())
        h.update(f"\0first\0{q.first}\0second\0{q.second}".encode())
        return 1.0 if h.digest()[0] & 1 else 0.0
