"""Turning a user's labeled pairs into presented examples (which response is shown first).

Presentation follows the reference: a pair's ``flip`` field (published data)
decides whether the chosen response is shown first; without it, a coin seeded
by (seed, pair_id). Validation pairs are judged once each in that order (the
reference's ``SynthesizeMe.fit``), or in both orders (``validation_orders="both"``).
A user with no validation pairs has their train pairs split 70/30 in the order
the benchmark gives them (the source's order, see ``UserHistory``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from personalrewardbench.data.schema import Context, PreferencePair, UserHistory
from personalrewardbench.judging import FIRST, SECOND, chosen_shown_first, item_seed


@dataclass(frozen=True)
class Example:
    """One ordering of one pair. ``gold`` is 'First'/'Second' for labeled examples, None for queries."""

    key: str
    pair_id: str
    context: Context
    first: str
    second: str
    gold: str | None


@dataclass(frozen=True)
class Demo:
    """A worked example: a verified reasoning trace, or a raw labeled pair (``reasoning`` None)."""

    example: Example
    reasoning: str | None = None


def item_rng(seed: int, *parts: object) -> random.Random:
    """A Random seeded by a hash of the seed and the item's identity (independent of order/batching)."""
    return random.Random(item_seed(seed, *parts))


def present(pair: PreferencePair, chosen_first: bool) -> Example:
    first, second = (pair.chosen, pair.rejected) if chosen_first else (pair.rejected, pair.chosen)
    return Example(
        key=f"{pair.pair_id}|{'cf' if chosen_first else 'cs'}",
        pair_id=pair.pair_id,
        context=pair.context,
        first=first,
        second=second,
        gold=FIRST if chosen_first else SECOND,
    )


def present_once(pair: PreferencePair, seed: int) -> Example:
    """The pair's single presentation: its ``flip`` field if present, else a seeded coin."""
    return present(pair, chosen_shown_first(pair, seed))


def present_both(pair: PreferencePair) -> list[Example]:
    """Both orders (validation scoring judges every pair twice)."""
    return [present(pair, True), present(pair, False)]


@dataclass(frozen=True)
class UserSplit:
    train: tuple[Example, ...]
    val: tuple[Example, ...]
    note: str  # "given" | "split-70-30" | "val-is-train" | "no-history"


def split_user(history: UserHistory, seed: int, train_val_ratio: float, validation_orders: str = "flip") -> UserSplit:
    """Train examples (one order each) and validation examples for one user.

    ``validation_orders``: "flip" (each pair once, as presented; the reference) or "both".
    """
    train_pairs: Sequence[PreferencePair] = history.train
    val_pairs: Sequence[PreferencePair] = history.val
    note = "given"
    if not val_pairs:
        cut = int(len(train_pairs) * train_val_ratio)
        if 0 < cut < len(train_pairs):
            train_pairs, val_pairs = train_pairs[:cut], train_pairs[cut:]
            note = "split-70-30"
        elif train_pairs:
            # Too few pairs to split: score candidates on the train pairs themselves (recorded).
            val_pairs = train_pairs
            note = "val-is-train"
        else:
            note = "no-history"
    elif not train_pairs:
        train_pairs = val_pairs
        note = "train-is-val"
    train = tuple(present_once(p, seed) for p in train_pairs)
    if validation_orders == "both":
        val = tuple(e for p in val_pairs for e in present_both(p))
    else:
        val = tuple(present_once(p, seed) for p in val_pairs)
    return UserSplit(train=train, val=val, note=note)
