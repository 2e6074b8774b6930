"""Checks every loaded or built benchmark passes.

Errors (raised as one :class:`DataError` naming dataset, row and field, with a
fix): missing/ill-typed required fields, unknown split, empty context, empty or
identical responses, duplicate pair ids, and leakage (the same pair, in either
order, in test and in train/val of one user).

Warnings (counted, stored in the manifest): users without test pairs, users
without any train/val pairs, the same pair twice within one split, contexts that
do not end with a user turn, users missing from the profile table.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from personalrewardbench.data.errors import DataError
from personalrewardbench.data.schema import ROLES, SPLITS, PreferencePair

Locate = Callable[[int], str]


def _default_locate(i: int) -> str:
    return f"pair #{i}"


def pair_content_key(p: PreferencePair) -> str:
    """Identity of a pair's content: user, context and the unordered two responses."""
    h = hashlib.sha256()
    h.update(p.user_id.encode())
    for m in p.context:
        h.update(b"\x1e" + m.role.encode() + b"\x1f" + m.content.encode())
    for r in sorted((p.chosen, p.rejected)):
        h.update(b"\x1d" + r.encode())
    return h.hexdigest()


def _check_fields(p: PreferencePair, name: str, where: str) -> None:
    def fail(field: str, problem: str, fix: str) -> None:
        raise DataError(f"{name}: {where} (pair_id={p.pair_id!r}): field {field!r} {problem}. {fix}")

    if not isinstance(p.pair_id, str) or not p.pair_id:
        fail("pair_id", "is empty", "Every pair needs a unique id.")
    if not isinstance(p.user_id, str) or not p.user_id.strip():
        fail("user_id", "is empty", "Every pair needs the id of the user who judged it.")
    if p.split not in SPLITS:
        fail("split", f"is {p.split!r}, not one of {list(SPLITS)}", "Use train, val or test.")
    if not p.context:
        fail("context", "is empty", "Give the conversation the responses answer (at least one user message).")
    for k, m in enumerate(p.context):
        if m.role not in ROLES:
            fail(f"context[{k}].role", f"is {m.role!r}", f"Use one of {list(ROLES)}.")
        if not isinstance(m.content, str):
            fail(f"context[{k}].content", "is not a string", "Fix the message.")
    for field in ("chosen", "rejected"):
        v = getattr(p, field)
        if not isinstance(v, str) or not v.strip():
            fail(field, "is empty", "Drop the pair or fill in the response text.")
    if p.chosen.strip() == p.rejected.strip():
        fail("chosen", "is identical to 'rejected'", "A pair needs two different responses; drop it.")


def validate_pairs(
    pairs: Sequence[PreferencePair],
    profiles: Mapping[str, Any] | None = None,
    *,
    name: str,
    locate: Locate | None = None,
) -> dict[str, int]:
    """Raise DataError on the first error; return warning counts (only nonzero ones)."""
    loc = locate or _default_locate
    if not pairs:
        raise DataError(f"{name}: the benchmark has no pairs. Check the input files and the filter settings.")
    warnings: Counter[str] = Counter()
    seen_ids: dict[str, int] = {}
    by_content: dict[str, list[int]] = defaultdict(list)
    splits_of_user: dict[str, Counter[str]] = defaultdict(Counter)
    for i, p in enumerate(pairs):
        _check_fields(p, name, loc(i))
        j = seen_ids.get(p.pair_id)
        if j is not None:
            raise DataError(
                f"{name}: {loc(i)}: field 'pair_id' {p.pair_id!r} duplicates {loc(j)}. "
                "Pair ids must be unique: drop the repeated row or give it its own id."
            )
        seen_ids[p.pair_id] = i
        by_content[pair_content_key(p)].append(i)
        splits_of_user[p.user_id][p.split] += 1
        if p.context[-1].role != "user":
            warnings["context_not_ending_with_user"] += 1
    for idx in by_content.values():
        if len(idx) < 2:
            continue
        test = [i for i in idx if pairs[i].split == "test"]
        other = [i for i in idx if pairs[i].split != "test"]
        if test and other:
            a, b = pairs[other[0]], pairs[test[0]]
            raise DataError(
                f"{name}: leakage for user {a.user_id!r}: {loc(test[0])} (pair_id={b.pair_id!r}, split test) "
                f"repeats {loc(other[0])} (pair_id={a.pair_id!r}, split {a.split}) with the same context and "
                "responses. Keep one copy, or move both to the same split."
            )
        warnings["duplicate_pair_content"] += len(idx) - 1
    for counts in splits_of_user.values():
        if not counts["test"]:
            warnings["users_without_test_pairs"] += 1
        if not counts["train"] and not counts["val"]:
            warnings["users_without_history"] += 1
    if profiles is not None:
        missing = sum(1 for u in splits_of_user if u not in profiles)
        if missing:
            warnings["users_missing_from_profiles"] += missing
    return {k: v for k, v in sorted(warnings.items()) if v}
