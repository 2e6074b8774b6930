"""Position baseline: always prefers the first response."""

from __future__ import annotations

from collections.abc import Sequence

from personalrewardbench.data.schema import Query
from personalrewardbench.methods import Method


class PositionBaseline(Method):
    name = "position"
    capabilities = frozenset({"pairwise"})

    def predict(self, queries: Sequence[Query]) -> list[float]:
        return [1.0 for _ in queries]
