"""Length baseline: prefers the longer response."""

from __future__ import annotations

from collections.abc import Sequence

from personalrewardbench.data.schema import Query
from personalrewardbench.methods import Method, MethodError

UNITS = ("chars", "words")


class LengthBaseline(Method):
    name = "length"
    capabilities = frozenset({"pairwise"})

    def __init__(self, unit: str = "chars") -> None:
        if unit not in UNITS:
            raise MethodError(f"length baseline: unit {unit!r} is not one of {UNITS}")
        self.unit = unit

    def _size(self, text: str) -> int:
        return len(text) if self.unit == "chars" else len(text.split())

    def predict(self, queries: Sequence[Query]) -> list[float]:
        out = []
        for q in queries:
            a, b = self._size(q.first), self._size(q.second)
            out.append(1.0 if a > b else 0.0 if a < b else 0.5)
        return out
