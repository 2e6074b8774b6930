"""Leak probe: predicts from the benchmark's label-free structure only, a seeded coin elsewhere.

Uses exactly what a method is given: the users' labeled train/val pairs in ``fit`` and, in each
``predict`` call, the queries of that call (grouped by user: a user's queries seen together).
The signals and their order are those of :mod:`personalrewardbench.data.leakage`; the directions
of the label-free ones are learned from the train/val pairs of all users.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from personalrewardbench.data.leakage import Item, UserStructure, coin, decide, learn_directions
from personalrewardbench.data.schema import Query, UserHistory
from personalrewardbench.methods import Method


class LeakProbe(Method):
    name = "leak-probe"
    capabilities = frozenset({"pairwise"})

    def __init__(self) -> None:
        self.structures: dict[str, UserStructure] = {}
        self.directions: dict[str, int] = {}
        self.decided: dict[str, int] = {"structure": 0, "coin": 0}

    def fit(self, histories: Sequence[UserHistory]) -> None:
        self.structures = {}
        groups = []
        for h in histories:
            s = UserStructure((p.context, p.chosen, p.rejected) for p in (*h.train, *h.val))
            self.structures[h.user_id] = s
            for split in (h.train, h.val):
                if split:
                    groups.append((s, [Item(p.context, p.chosen, p.rejected) for p in split], [1] * len(split)))
        self.directions = learn_directions(groups)

    def predict(self, queries: Sequence[Query]) -> list[float]:
        seed = self.env.seed if hasattr(self, "env") else 0
        by_user: dict[str, list[int]] = defaultdict(list)
        for i, q in enumerate(queries):
            by_user[q.user_id].append(i)
        out = [0.5] * len(queries)
        for uid, idx in by_user.items():
            structure = self.structures.get(uid) or UserStructure()
            items = [Item(queries[i].context, queries[i].first, queries[i].second) for i in idx]
            for i, item, sig in zip(idx, items, structure.signals(items), strict=True):
                d, _ = decide(sig, self.directions or {})
                self.decided["structure" if d else "coin"] += 1
                d = d or coin(seed, uid, item)
                out[i] = 1.0 if d > 0 else 0.0
        return out

    def usage(self) -> dict[str, int]:
        """Queries decided by the structure and by the coin (over this run's predict calls)."""
        return {"queries_decided_by_structure": self.decided["structure"],
                "queries_decided_by_coin": self.decided["coin"]}
