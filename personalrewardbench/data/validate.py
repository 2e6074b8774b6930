"""Checks every loaded or built benchmark passes. Two severities (README, Data):

Errors (raised as one :class:`DataError` naming dataset, row and field, with a fix), always:
missing/ill-typed required fields, unknown split or role, empty context, duplicate pair ids.
For locally built or supplied data also: empty or identical responses, a context message that is
empty and a context with no message that has text ("empty" always in :func:`normalize_text` form:
only whitespace or invisible format characters such as ``"\u200b\u00ad"`` is empty, for responses
and context messages alike), a response or message
that is a serialized message object (``"{'role': 'model', 'content': ...}"``), leakage (the
same pair, in either order, in test and in train/val of one user), and user ids that differ
only by whitespace or Unicode normalization (``"u1"`` and ``"u1 "``: one user split in two).

For an ``official`` published benchmark those content quirks are warnings instead (counted, with
locations, in the manifest and in every result on it): the benchmark is scored as released.

Warnings always (counted): users without test pairs, users without any train/val pairs, the same
pair twice within one split, contexts that do not end with a user turn, users missing from the
profile table, a context message or response over :data:`VERY_LONG_CHARS` characters
(``very_long_text``), and a format mark that separates chosen from rejected in most of a
dataset's pairs (``format_mark_one_sided``, :func:`check_format_marks`): a mark can be a model's
real output, so it is never a refusal, but a one-line check reads those labels.

All repeat checks compare texts in :func:`~personalrewardbench.data.text.normalize_text` form
(NFKC, whitespace collapsed and stripped) and contexts without their empty messages
(:func:`~personalrewardbench.data.text.comparison_context`): a repeat that differs by a newline or
an added empty system prompt is still a repeat.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from personalrewardbench.data.errors import DataError
from personalrewardbench.data.marks import one_sided_marks
from personalrewardbench.data.schema import ROLES, SPLITS, PreferencePair
from personalrewardbench.data.text import (
    EMPTY_CONTEXT,
    EMPTY_CONTEXT_MESSAGE,
    EMPTY_RESPONSE,
    FORMAT_MARK_ONE_SIDED,
    IDENTICAL_RESPONSES,
    SERIALIZED_MESSAGE,
    TEST_REPEATS_HISTORY,
    USER_ID_VARIANTS,
    VERY_LONG_TEXT,
    Findings,
    comparison_context,
    normalize_text,
    serialized_message,
)

Locate = Callable[[int], str]
# A context message or response longer than this many characters is counted as ``very_long_text``:
# 10^6 characters is about 250,000 tokens at ~4 characters a token, beyond the context window of the
# judge and reward models the harness runs (SmolLM2: 8,192 tokens; common served LLMs: 32k-128k), so
# no method can read such a text whole; it is most likely a file or a scrape pasted into one field.
VERY_LONG_CHARS = 1_000_000


def _default_locate(i: int) -> str:
    return f"pair #{i}"


def _b(s: str) -> bytes:
    return s.encode("utf-8", "surrogatepass")


def pair_content_key(p: PreferencePair) -> str:
    """Identity of a pair's content: user id, context and the unordered two responses, all in
    normalized form (format characters removed, NFKC, whitespace collapsed and stripped; context
    messages that normalize to nothing, such as an empty system prompt, left out)."""
    h = hashlib.sha256()
    h.update(_b(normalize_text(p.user_id)))
    for role, content in comparison_context(p.context):
        h.update(b"\x1e" + _b(role) + b"\x1f" + _b(content))
    for r in sorted((normalize_text(p.chosen), normalize_text(p.rejected))):
        h.update(b"\x1d" + _b(r))
    return h.hexdigest()


def _empty(text: str) -> str:
    """How an empty text is described: plainly empty, or empty once whitespace and invisible
    (format) characters are removed (:func:`normalize_text`)."""
    return "is empty" if not text else "is empty (only whitespace or invisible characters)"


def _check_fields(p: PreferencePair, name: str, where: str, official: bool, findings: Findings) -> None:
    def fail(field: str, problem: str, fix: str) -> None:
        raise DataError(f"{name}: {where} (pair_id={p.pair_id!r}): field {field!r} {problem}. {fix}")

    def quirk(kind: str, field: str, problem: str, fix: str) -> None:
        if not official:
            fail(field, problem, fix)
        findings.warn(kind, f"{where} (pair_id={p.pair_id!r}): field {field!r} {problem}")

    if not isinstance(p.pair_id, str) or not p.pair_id:
        fail("pair_id", "is empty", "Every pair needs a unique id.")
    if not isinstance(p.user_id, str) or not p.user_id.strip():
        fail("user_id", "is empty", "Every pair needs the id of the user who judged it.")
    if p.split not in SPLITS:
        fail("split", f"is {p.split!r}, not one of {list(SPLITS)}", "Use train, val or test.")
    if not p.context:
        fail("context", "is empty", "Give the conversation the responses answer (at least one user message).")
    has_text = bool(comparison_context(p.context)) if all(isinstance(m.content, str) for m in p.context) else True
    for k, m in enumerate(p.context):
        if m.role not in ROLES:
            fail(f"context[{k}].role", f"is {m.role!r}", f"Use one of {list(ROLES)}.")
        if not isinstance(m.content, str):
            fail(f"context[{k}].content", "is not a string", "Fix the message.")
        if len(m.content) > VERY_LONG_CHARS:
            findings.warn(VERY_LONG_TEXT, f"{where} (pair_id={p.pair_id!r}): field 'context[{k}].content' holds "
                                          f"{len(m.content):,} characters")
        if has_text and not normalize_text(m.content):
            quirk(EMPTY_CONTEXT_MESSAGE, f"context[{k}].content", _empty(m.content),
                  "Drop the message (an empty system prompt or turn adds nothing) or fill in its text.")
        elif m.content.lstrip()[:1] in ("{", "[") and (what := serialized_message(m.content)):
            quirk(SERIALIZED_MESSAGE, f"context[{k}].content", f"is {what}, not the message text",
                  "A CSV or pandas round trip serialized it; write the message's own content.")
    if not has_text:
        quirk(EMPTY_CONTEXT, "context", "has no message with text (" + ("its one message is" if len(p.context) == 1 else
              f"each of its {len(p.context)} messages is") + " empty or only whitespace or invisible characters)",
              "Give the conversation the responses answer (at least one user message with text), or drop the pair.")
    for field in ("chosen", "rejected"):
        v = getattr(p, field)
        if not isinstance(v, str):
            fail(field, "is not a string", "Fix the row.")
        if len(v) > VERY_LONG_CHARS:
            findings.warn(VERY_LONG_TEXT, f"{where} (pair_id={p.pair_id!r}): field {field!r} holds {len(v):,} "
                                          "characters")
        if not normalize_text(v):
            quirk(EMPTY_RESPONSE, field, _empty(v), "Drop the pair or fill in the response text.")
        elif v.lstrip()[:1] in ("{", "[") and (what := serialized_message(v)):
            quirk(SERIALIZED_MESSAGE, field, f"is {what}, not the response text",
                  "A CSV or pandas round trip serialized it; write the response's own content.")
    if normalize_text(p.chosen) == normalize_text(p.rejected) and normalize_text(p.chosen):
        quirk(IDENTICAL_RESPONSES, "chosen", "is identical to 'rejected'",
              "A pair needs two different responses; drop it.")


def check_user_id_variants(user_ids: Iterable[str], name: str, *, official: bool, found: Findings) -> None:
    """Distinct user ids equal after normalize_text: an error for local data, counted (one per
    extra variant) for an official benchmark."""
    groups: dict[str, list[str]] = defaultdict(list)
    for uid in user_ids:
        groups[normalize_text(uid)].append(uid)
    for ids in groups.values():
        if len(ids) < 2:
            continue
        ids.sort()
        msg = (f"user ids {', '.join(repr(u) if u.isascii() else ascii(u) for u in ids)} differ only by whitespace or Unicode normalization "
               "(one user split in two?)")
        if not official:
            raise DataError(f"{name}: {msg}. Write one id for each user.")
        found.warn(USER_ID_VARIANTS, msg, n=len(ids) - 1)


def check_format_marks(pairs: Sequence[PreferencePair], found: Findings) -> None:
    """Warn (``format_mark_one_sided``, always a warning: a mark can be a model's real style) for each
    format mark that separates chosen from rejected in a dataset
    (:func:`~personalrewardbench.data.marks.one_sided_marks`: at least 20 pairs differ in it, at least
    90% of them on the same side); the count is the pairs where such a mark differs."""
    marks, affected = one_sided_marks((p.dataset, p.chosen, p.rejected) for p in pairs)
    for m in marks:
        found.warn(FORMAT_MARK_ONE_SIDED, m.message(), n=0)
    for n in affected.values():
        found.counts[FORMAT_MARK_ONE_SIDED] += n


def validate_pairs(
    pairs: Sequence[PreferencePair],
    profiles: Mapping[str, Any] | None = None,
    *,
    name: str,
    locate: Locate | None = None,
    official: bool = False,
    findings: Findings | None = None,
) -> dict[str, int]:
    """Raise DataError on the first error; return warning counts (only nonzero ones).

    ``official``: the data is a published benchmark as released; its content quirks are counted
    (module doc) instead of raised. ``findings``, when given, also receives each warning's
    location; the returned counts are this call's only.
    """
    loc = locate or _default_locate
    if not pairs:
        raise DataError(f"{name}: the benchmark has no pairs. Check the input files and the filter settings.")
    found = Findings()
    seen_ids: dict[str, int] = {}
    by_content: dict[str, list[int]] = defaultdict(list)
    splits_of_user: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SPLITS, 0))
    for i, p in enumerate(pairs):
        _check_fields(p, name, loc(i), official, found)
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
            found.warn("context_not_ending_with_user", loc(i))
    for idx in by_content.values():
        if len(idx) < 2:
            continue
        test = [i for i in idx if pairs[i].split == "test"]
        other = [i for i in idx if pairs[i].split != "test"]
        if test and other:
            a, b = pairs[other[0]], pairs[test[0]]
            msg = (f"leakage for user {a.user_id!r}: {loc(test[0])} (pair_id={b.pair_id!r}, split test) repeats "
                   f"{loc(other[0])} (pair_id={a.pair_id!r}, split {a.split}) with the same context and responses "
                   "(compared after Unicode NFKC and whitespace normalization)")
            if not official:
                raise DataError(f"{name}: {msg}. Keep one copy, or move both to the same split.")
            found.warn(TEST_REPEATS_HISTORY, msg, n=len(test))
        same_split = len(idx) - len({pairs[i].split for i in idx})
        if same_split:
            found.warn("duplicate_pair_content", loc(idx[1]), n=same_split)
    check_user_id_variants(splits_of_user, name, official=official, found=found)
    check_format_marks(pairs, found)
    for uid, counts in sorted(splits_of_user.items()):
        if not counts["test"]:
            found.warn("users_without_test_pairs", f"user {uid!r}")
        if not counts["train"] and not counts["val"]:
            found.warn("users_without_history", f"user {uid!r}")
    if profiles is not None:
        missing = sorted(u for u in splits_of_user if u not in profiles)
        for u in missing:
            found.warn("users_missing_from_profiles", f"user {u!r}")
    if findings is not None:
        findings.update(found.counts, found.locations)
    return found.warnings()
