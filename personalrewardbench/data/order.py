"""The source order of a user's pairs: what "earlier" and "newest" mean per dataset.

Each loader records, in ``PreferencePair.meta["source_position"]``, the pair's
position among the same user's pairs in the source (0 = earliest):

- published PersonalRewardBench rows (and the synthetic sample, built the same
  way): the order of the rows as read (hub splits concatenated train, validation,
  test, as the reference loader does; local files in file order);
- ``chatbot_arena_raw``: the battle's ``tstamp`` (a Unix time), ties and missing
  stamps in read order;
- ``prism_raw``: conversations in the order the source lists them, then turn order
  inside a conversation (the release has no per-turn timestamp);
- ``summarize_feedback``: the labeling batch (``batch3`` < ``batch10``), then read order.

:class:`~personalrewardbench.data.schema.UserHistory` gives a user's train and
val pairs in this order (``Benchmark.histories``); methods use it for the
reference's in-order 70/30 split, its ``unshuffled`` candidate, and ``memory``'s
newest-first history. Benchmarks built before this field existed fall back to
pair-id order. The content hash leaves the position out (``schema.UNHASHED_META``): the
same data gives the same hash whatever order its rows come in, as before this field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from personalrewardbench.data.schema import PreferencePair

SOURCE_POSITION = "source_position"


def source_position(pair: PreferencePair) -> int | None:
    """The pair's recorded position among its user's pairs, or None when the source gave none."""
    pos = pair.meta.get(SOURCE_POSITION) if pair.meta else None
    return pos if isinstance(pos, int) and not isinstance(pos, bool) else None


def in_source_order(pairs: Sequence[PreferencePair]) -> list[PreferencePair]:
    """``pairs`` sorted by source position (stable; pairs without one keep their order, after the others)."""
    indexed = list(enumerate(pairs))
    indexed.sort(key=lambda ip: (source_position(ip[1]) is None, source_position(ip[1]) or 0, ip[0]))
    return [p for _, p in indexed]


def _number(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def arena_key(pair: PreferencePair) -> tuple:
    t = _number(pair.meta.get("tstamp"))
    return (t is None, t or 0.0)


def summarize_key(pair: PreferencePair) -> tuple:
    m = re.search(r"\d+", str(pair.meta.get("batch") or ""))
    return (m is None, int(m.group()) if m else 0)


SOURCE_KEYS: dict[str, Callable[[PreferencePair], tuple]] = {
    "chatbot_arena_raw": arena_key,
    "summarize_feedback": summarize_key,
}


def assign_source_positions(pairs: Sequence[PreferencePair], source: str | None = None) -> list[PreferencePair]:
    """Record each pair's position among its user's pairs (see the module doc), keeping the list's order.

    ``pairs`` must be in read order; ``source`` picks the dataset's time key
    (:data:`SOURCE_KEYS`; read order alone for the others). Python's sort is
    stable, so ties keep read order.
    """
    key = SOURCE_KEYS.get(source or "")
    by_user: dict[str, list[int]] = {}
    for i, p in enumerate(pairs):
        by_user.setdefault(p.user_id, []).append(i)
    position: dict[int, int] = {}
    for idx in by_user.values():
        ordered = sorted(idx, key=lambda i: key(pairs[i])) if key is not None else idx
        for pos, i in enumerate(ordered):
            position[i] = pos
    return [replace(p, meta={**p.meta, SOURCE_POSITION: position[i]}) for i, p in enumerate(pairs)]
