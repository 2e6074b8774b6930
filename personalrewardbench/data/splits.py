"""Filters and the seeded per-user train/val/test split shared by the raw builders.

The split unit is a *group* (a conversation, an Arena battle, a Reddit post):
all pairs of one group land in the same split, so no context is shared between
a user's train and test pairs. Each user's groups are ordered by
sha256(seed, user, group) -- independent of input order, batch size or
sharding -- then taken into test, then val, while each group brings the split
closer to its target share; the rest is train. Each split gets at least one group.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from personalrewardbench.data.common import stable_hash
from personalrewardbench.data.errors import DataError
from personalrewardbench.data.schema import PreferencePair

# Proportions of the published Chatbot Arena benchmark's hub splits (train 305,
# validation 235, test 798 of 1,338 rows); the paper's exact split rule is not public.
DEFAULT_FRACTIONS = (0.23, 0.17, 0.60)


@dataclass(frozen=True)
class SplitSettings:
    """Filters and split settings (defaults follow the paper where known)."""

    seed: int = 0
    min_pairs_per_user: int = 5  # users with fewer pairs are dropped (paper: at least 5)
    max_pairs_per_user: int | None = None  # cap, keeping a seeded subset of groups
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS  # train, val, test

    def __post_init__(self) -> None:
        if len(self.fractions) != 3 or any(f < 0 for f in self.fractions) or abs(sum(self.fractions) - 1) > 1e-6:
            raise DataError(f"split fractions {self.fractions} must be three non-negative numbers summing to 1 "
                            "(train, val, test), e.g. 0.23,0.17,0.60.")
        if self.min_pairs_per_user < 3:
            raise DataError("min_pairs_per_user must be at least 3 (one pair each for train, val and test).")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fractions"] = list(self.fractions)
        return d

    def with_(self, **kw: Any) -> SplitSettings:
        return replace(self, **kw)


def split_users(
    pairs: Sequence[PreferencePair], group_of: Mapping[str, str], settings: SplitSettings
) -> tuple[list[PreferencePair], dict[str, int]]:
    """Assign splits; drop users below the threshold. ``group_of`` maps pair_id -> group id.

    Returns the kept pairs (with ``split`` set) and counts of what was dropped.
    """
    by_user: dict[str, dict[str, list[PreferencePair]]] = defaultdict(lambda: defaultdict(list))
    for p in pairs:
        by_user[p.user_id][group_of[p.pair_id]].append(p)
    dropped: Counter[str] = Counter()
    out: list[PreferencePair] = []
    f_train, f_val, f_test = settings.fractions
    for uid in sorted(by_user):
        groups = by_user[uid]
        order = sorted(groups, key=lambda g: stable_hash(settings.seed, uid, g))
        if settings.max_pairs_per_user is not None:
            kept, n = [], 0
            for g in order:
                if n + len(groups[g]) > settings.max_pairs_per_user and kept:
                    continue
                kept.append(g)
                n += len(groups[g])
            order = kept
        n_pairs = sum(len(groups[g]) for g in order)
        if n_pairs < settings.min_pairs_per_user:
            dropped["users_below_min_pairs"] += 1
            dropped["pairs_of_dropped_users"] += n_pairs
            continue
        if len(order) < 3:
            dropped["users_with_under_3_groups"] += 1
            dropped["pairs_of_dropped_users"] += n_pairs
            continue
        want_test = max(1, round(f_test * n_pairs)) if f_test > 0 else 0
        want_val = max(1, round(f_val * n_pairs)) if f_val > 0 else 0
        assigned: dict[str, list[str]] = {"test": [], "val": [], "train": []}
        remaining = list(order)
        for split, want, keep_back in (("test", want_test, 2), ("val", want_val, 1)):
            n = 0
            # take groups in hash order while that brings the split closer to its target
            while remaining and len(remaining) > keep_back and want > 0:
                size = len(groups[remaining[0]])
                if n and abs(n + size - want) >= abs(n - want):
                    break
                assigned[split].append(remaining.pop(0))
                n += size
        assigned["train"] = remaining
        for split, gs in assigned.items():
            for g in gs:
                out.extend(replace(p, split=split) for p in groups[g])
    return out, {k: v for k, v in dropped.items() if v}
