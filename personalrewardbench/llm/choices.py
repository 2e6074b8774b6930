"""Scoring a fixed set of answers ("A"/"B", "First"/"Second") as the model's next words.

A model may start its answer with ``A``, `` A`` or ``a``; each is a different
token. The probability of a choice is the total probability of its surface
variants: as given, lower case, capitalized and upper case, each with and
without a leading space. A variant that is also a variant of another choice is
dropped (so choices ``a`` and ``A`` stay apart), and so is any variant whose
tokens start with another variant's tokens of the same choice (so no
probability is counted twice). (A choice that is itself a prefix of another,
like ``A`` and ``AB``, also counts the other's continuations; avoid such sets.) The log-probability of a choice is then the logsumexp over its
variants of each variant's full-sequence log-probability; with disjoint,
prefix-free variants the choice probabilities sum to at most 1.

Reading a server's answers: :func:`answer_top_logprobs` (the listed alternatives of an OpenAI
chat answer's first token) and :func:`first_named_choice` (the choice a free-text answer names
first, for a greedy fallback).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any


def surface_variants(choice: str) -> list[str]:
    base = choice.strip()
    forms = dict.fromkeys([base, base.lower(), base[:1].upper() + base[1:], base.capitalize(), base.upper()])
    return [v for f in forms for v in (f, " " + f)]


def choice_variants(choices: Sequence[str]) -> dict[str, list[str]]:
    """{choice: its surface variants}, without variants shared by two choices."""
    per = {c: surface_variants(c) for c in choices}
    owners: dict[str, set[str]] = {}
    for c, vs in per.items():
        for v in vs:
            owners.setdefault(v, set()).add(c)
    return {c: [v for v in vs if len(owners[v]) == 1 or v.strip() == c.strip()] for c, vs in per.items()}


def variant_token_ids(choices: Sequence[str],
                      encode: Callable[[str], list[int]]) -> dict[str, list[tuple[int, ...]]]:
    """{choice: distinct, prefix-free token sequences of its variants} under ``encode``."""
    seqs: dict[tuple[int, ...], str] = {}
    for c, vs in choice_variants(choices).items():
        for v in vs:
            ids = tuple(encode(v))
            if ids and ids not in seqs:
                seqs[ids] = c
    out: dict[str, list[tuple[int, ...]]] = {c: [] for c in choices}
    for s, c in seqs.items():
        if not any(len(o) < len(s) and s[:len(o)] == o and seqs[o] == c for o in seqs):
            out[c].append(s)
    return out


def logsumexp(values: Iterable[float]) -> float:
    vals = [v for v in values if v != -math.inf]
    if not vals:
        return -math.inf
    m = max(vals)
    return m + math.log(sum(math.exp(v - m) for v in vals))


#: vLLM's OpenAI server writes -inf as this floor (``max(logprob, -9999.0)``, since JSON has no -inf);
#: any value at or below it, and NaN, is read as -inf.
LOGPROB_FLOOR = -9999.0


def clean_logprob(value: object) -> float:
    """A server's log-probability as a float, with vLLM's -9999.0 floor, NaN and junk read as ``-inf``."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return -math.inf
    return -math.inf if math.isnan(x) or x <= LOGPROB_FLOOR else min(x, 0.0)


def unlisted_bound(listed: Iterable[float]) -> float:
    """Upper bound on the log-probability of a token outside a top-k list of log-probabilities.

    A token not listed is at most as likely as the least likely listed one, and at most the
    probability mass the list leaves over (1 - sum of the listed probabilities).
    """
    vals = list(listed)
    if not vals:
        return 0.0
    bound = min(vals)
    rest = 1.0 - sum(math.exp(v) for v in vals)
    return min(bound, math.log(rest)) if rest > 0 else bound


@dataclass(frozen=True)
class TopMatch:
    """Choice log-probabilities read from one top next-token list.

    ``unlisted``: the choices none of whose tokens were listed; their log-probability is the
    :func:`unlisted_bound` of the list (an upper bound), not a measurement.
    """

    logprobs: dict[str, float]
    unlisted: tuple[str, ...] = ()


def match_top_tokens(choices: Sequence[str], top: Sequence[tuple[str, float]]) -> dict[str, float]:
    """Choice log-probs from a server's top next-token list ``[(token_text, logprob)]``.

    A token counts for a choice when its text (stripped, any case) is the choice,
    or is at least 3 characters long and the start of exactly one choice (a
    multi-token choice scored by its first token). A token that starts several
    choices ("Response" for "Response 1"/"Response 2") tells them apart no better
    than chance and is not counted. Tokens are distinct entries, so their
    probabilities add up. Choices with no matching token get ``-inf`` here; see
    :func:`read_top_tokens` for the bounded reading the backends use.
    """
    found: dict[str, list[float]] = {c: [] for c in choices}
    seen: set[str] = set()
    for text, lp in top:
        t = text.strip().lower()
        if not t or text in seen:
            continue
        seen.add(text)
        exact = [c for c in choices if c.strip().lower() == t]
        owners = [c for c in choices if c.strip().lower().startswith(t)] if len(t) >= 3 else []
        if len(exact) == 1 or (not exact and len(owners) == 1):
            found[(exact or owners)[0]].append(clean_logprob(lp))
    return {c: logsumexp(v) for c, v in found.items()}


def read_top_tokens(choices: Sequence[str], top: Sequence[tuple[str, float]]) -> TopMatch | None:
    """:func:`match_top_tokens` with the conventions servers use; None when the list says nothing.

    Log-probabilities at vLLM's -9999.0 floor are ``-inf``. A choice with no listed token gets the
    :func:`unlisted_bound` of the list (it is less likely than every listed token), so a missing
    choice never turns into certainty. None (no information about the choices) when no choice has a
    listed token with a finite log-probability.
    """
    clean = [(str(t), clean_logprob(lp)) for t, lp in top]
    got = match_top_tokens(choices, clean)
    if all(v == -math.inf for v in got.values()):
        return None
    missing = tuple(c for c, v in got.items() if v == -math.inf)
    if missing:
        seen: dict[str, float] = {}
        for t, lp in clean:
            seen.setdefault(t, lp)
        bound = unlisted_bound(seen.values())
        got = {c: (bound if c in missing else v) for c, v in got.items()}
    return TopMatch(got, missing)

def answer_top_logprobs(answer: dict | None) -> list[tuple[str, Any]] | None:
    """An OpenAI chat answer's first token's listed alternatives (and the token itself) as ``[(text, logprob)]``.

    None when the answer carries no log-probabilities (``logprobs: null``, no content, or an
    empty list): the server gave none for this request.
    """
    try:
        first = answer["choices"][0]["logprobs"]["content"][0]  # type: ignore[index]
    except (TypeError, KeyError, IndexError):
        return None
    if not isinstance(first, dict):
        return None
    items = [t for t in (first.get("top_logprobs") or []) if isinstance(t, dict)]
    if "token" in first and first.get("logprob") is not None:
        items.append(first)
    out = [(str(t.get("token", "")), t.get("logprob")) for t in items if t.get("logprob") is not None]
    return out or None


def first_named_choice(text: str, choices: Sequence[str]) -> str | None:
    """The choice whose name appears first in ``text`` (whole word, any case)."""
    best: tuple[int, int, str] | None = None
    for c in choices:
        m = re.search(rf"(?<![\w]){re.escape(c.strip())}(?![\w])", text, flags=re.IGNORECASE)
        if m and (best is None or (m.start(), -len(c)) < best[:2]):
            best = (m.start(), -len(c), c)
    return best[2] if best else None
