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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass


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


#: How far listed probabilities may add up past 1 (or a log-probability rise above 0) by rounding:
#: float32 softmax, log-probabilities printed with two decimals (up to ~1% off each), OpenAI's 0.0
#: for near-certain tokens. Anything beyond is not a list of log-probabilities.
ROUNDING = 0.02
#: Leading marks of raw (undecoded) tokens that stand for a space or a line break: GPT-2 byte-level
#: BPE's "Ġ" (space) and "Ċ" (newline), SentencePiece's "▁" (space).
RAW_SPACE_MARKS = "\u0120\u010a\u2581"


def valid_logprob(value: object) -> bool:
    """True when ``value`` can be a log-probability as a server writes it in JSON.

    A number (not a bool or a string), not NaN, at most ``log(1 + ROUNDING)``; ``-inf`` and vLLM's
    -9999.0 floor are valid. Probabilities (0.8), logits (12.3) and ``+Infinity`` are not.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return not math.isnan(value) and value <= math.log1p(ROUNDING)


def token_text(text: str) -> str:
    """A listed token's text with a raw leading space mark (``Ġ``, ``▁``, ``Ċ``) read as whitespace."""
    stripped = text.lstrip(RAW_SPACE_MARKS)
    return " " + stripped if len(stripped) < len(text) else text


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
    probability mass the list leaves over (1 - sum of the listed probabilities; when the list holds
    it all, up to rounding, at most :data:`ROUNDING`).
    """
    vals = list(listed)
    if not vals:
        return 0.0
    bound = min(vals)
    rest = 1.0 - sum(math.exp(v) for v in vals)
    # a list that already holds all the mass (up to rounding) leaves at most the rounding
    return min(bound, math.log(rest) if rest > 0 else math.log(ROUNDING))


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
        t = token_text(text).strip().lower()
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
    listed token with a finite log-probability, and when the list is not one of log-probabilities:
    a value that fails :func:`valid_logprob` (probabilities, logits, NaN, strings, ``+inf``) or
    distinct tokens whose probabilities add up to more than ``1 + ROUNDING``.
    """
    if not all(valid_logprob(lp) for _, lp in top):
        return None
    distinct: dict[str, float] = {}
    for t, lp in top:
        distinct.setdefault(str(t), clean_logprob(lp))
    if sum(math.exp(v) for v in distinct.values()) > 1.0 + ROUNDING:
        return None
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
