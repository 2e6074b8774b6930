"""Shared judge-prompt utilities for LLM-judge methods.

One place for the pieces every pairwise LLM judge needs, so that the default
judge, memory, demographics and SynthesizeMe render, fit, parse and score the
same way:

- rendering a (multi-turn, role-tagged) conversation and two candidate responses;
- :func:`fit_prompt`: fit a prompt into the LLM's context budget. The stated
  rule: optional items (worked examples, history) are passed most important
  first and dropped *whole* from the end (the farthest/oldest go first); only
  when no optional item is left are the oldest turns of the conversation
  dropped, and last the earliest remaining turn is cut from the left. The two
  responses are never cut. The result says how much was dropped;
- :func:`parse_choice`: read First/Second out of free text (robust to case,
  markdown, "Response 1", "(B)", "Answer: second."...);
- :func:`p_first`: two choice log-probs -> P(first) (softmax over the two);
- :func:`generate_parsed`: generate, parse, and retry unparseable answers (by
  default as the reference does: identical temperature-0 tries, which a cache
  answers with the same reply, so a failed first try is final; or re-sampled
  tries with new seeds), then report the judgment as failed (None);
- :func:`reply_reserve`: the room a prompt leaves for a capped reply;
- :class:`JudgeStats`: per-user counters for ``Method.usage()``.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from personalrewardbench.data.schema import Context, Message, PreferencePair
from personalrewardbench.llm.base import LLM, GenerationParams

FIRST = "First"
SECOND = "Second"
CHOICES: tuple[str, str] = (FIRST, SECOND)

ROLE_TAGS = {"system": "System", "user": "User", "assistant": "Assistant"}
CUT_MARK = "[...] "

# The wording shared by every judge built on these utilities (hashed into provenance
# by the methods that expose ``prompt_templates``).
TEMPLATES: dict[str, str] = {
    "comparison": (
        "## Conversation\n{conversation}\n\n"
        "## First response\n{first}\n\n"
        "## Second response\n{second}"
    ),
    "direct_request": (
        "Which of the two responses is the better reply to the last turn of the conversation? "
        "Reply with one word: First or Second."
    ),
    "cot_request": (
        "Which of the two responses is the better reply to the last turn of the conversation? "
        "Think it through briefly in a few sentences, then end with a line that reads exactly "
        "'Answer: First' or 'Answer: Second'."
    ),
    "cot_followup": "Given your reasoning, which response is better? Reply with one word: First or Second.",
    "labeled_outcome": "Preferred: {choice}",
}


# ----------------------------------------------------------------------------- rendering


def render_conversation(context: Sequence[Message]) -> str:
    """Role-tagged turns, oldest first, separated by blank lines."""
    return "\n\n".join(f"{ROLE_TAGS.get(m.role, m.role.title())}: {m.content}" for m in context)


def render_comparison(context: Sequence[Message], first: str, second: str) -> str:
    """The conversation and the two candidate responses, labeled First and Second."""
    return TEMPLATES["comparison"].format(conversation=render_conversation(context), first=first, second=second)


def item_seed(seed: int, *parts: object) -> int:
    """A 31-bit seed from the run seed and an item's ids (independent of batch order)."""
    text = "\x1f".join([str(seed), *map(str, parts)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF


def chosen_shown_first(pair: PreferencePair, seed: int) -> bool:
    """How a labeled pair is shown: the source's ``flip`` flag if it has one, else a seeded coin."""
    flip = pair.meta.get("flip") if pair.meta else None
    if isinstance(flip, bool):
        return flip
    return item_seed(seed, "order", pair.pair_id) % 2 == 0


def render_labeled_pair(pair: PreferencePair, seed: int, reasoning: str | None = None) -> str:
    """A past judgment of the user: the comparison, optional reasoning, and which side they chose."""
    first_is_chosen = chosen_shown_first(pair, seed)
    first, second = (pair.chosen, pair.rejected) if first_is_chosen else (pair.rejected, pair.chosen)
    parts = [render_comparison(pair.context, first, second)]
    if reasoning:
        parts.append(f"Reasoning: {reasoning.strip()}")
    parts.append(TEMPLATES["labeled_outcome"].format(choice=FIRST if first_is_chosen else SECOND))
    return "\n\n".join(parts)


def judge_chat(system: str, context: Sequence[Message], first: str, second: str, *,
               preamble: str = "", request: str = TEMPLATES["direct_request"]) -> list[Message]:
    """The chat for one judgment: system instruction, then (preamble +) comparison + request."""
    body = render_comparison(context, first, second) + "\n\n" + request
    if preamble:
        body = preamble.rstrip() + "\n\n" + body
    return [Message("system", system), Message("user", body)]


# ----------------------------------------------------------------------------- fitting

T = TypeVar("T")


@dataclass(frozen=True)
class FittedPrompt:
    """A chat that fits the budget, and what was removed to make it fit.

    ``items_dropped``: whole optional items removed (from the end of the list).
    ``turns_dropped``: oldest conversation turns removed. ``chars_cut``: characters
    cut from the left of the earliest kept turn. ``overflow``: even the bare
    comparison does not fit (the responses alone are too long); the chat is sent
    as is and the backend truncates it.
    """

    chat: list[Message]
    tokens: int
    items_kept: int
    items_dropped: int = 0
    turns_dropped: int = 0
    chars_cut: int = 0
    overflow: bool = False

    @property
    def truncated(self) -> bool:
        return bool(self.turns_dropped or self.chars_cut)


def _largest_fitting(lo: int, hi: int, fits: Callable[[int], bool]) -> int | None:
    """Largest n in [lo, hi] with fits(n), assuming fits is monotone (true up to some n)."""
    if not fits(lo):
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _smallest_fitting(lo: int, hi: int, fits: Callable[[int], bool]) -> int | None:
    """Smallest n in [lo, hi] with fits(n), assuming fits is monotone (false up to some n)."""
    if lo > hi or not fits(hi):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def fit_prompt(llm: LLM, build: Callable[[Sequence[T], Context], list[Message]], context: Context,
               items: Sequence[T] = (), *, reserve_tokens: int = 16, min_items: int = 0) -> FittedPrompt:
    """Fit ``build(items, context)`` into ``llm.context_length - reserve_tokens`` tokens.

    ``items`` come most important first (e.g. newest history first) and are
    dropped whole from the end, never below ``min_items``. Then the oldest
    conversation turns go (the last turn is kept), then the kept first turn is
    cut from the left. Token counts are searched by bisection (O(log n) counts).
    """
    budget = llm.context_length - reserve_tokens
    context = tuple(context)
    counts: dict[tuple[int, int, int], int] = {}

    def variant(k: int, turns: int, cut: int) -> tuple[list[Message], Context]:
        ctx = context[turns:]
        if cut and ctx:
            head = ctx[0]
            ctx = (replace(head, content=CUT_MARK + head.content[cut:]), *ctx[1:])
        return build(items[:k], ctx), ctx

    def tokens(k: int, turns: int = 0, cut: int = 0) -> int:
        key = (k, turns, cut)
        if key not in counts:
            counts[key] = llm.count_tokens(variant(k, turns, cut)[0])
        return counts[key]

    def result(k: int, turns: int = 0, cut: int = 0, overflow: bool = False) -> FittedPrompt:
        return FittedPrompt(chat=variant(k, turns, cut)[0], tokens=tokens(k, turns, cut), items_kept=k,
                            items_dropped=len(items) - k, turns_dropped=turns, chars_cut=cut, overflow=overflow)

    n = len(items)
    min_items = min(min_items, n)
    if tokens(n) <= budget:
        return result(n)
    k = _largest_fitting(min_items, n, lambda k: tokens(k) <= budget)
    if k is not None:
        return result(k)
    k = min_items
    if not context:
        return result(k, overflow=True)
    last = len(context) - 1
    turns = _smallest_fitting(1, last, lambda t: tokens(k, t) <= budget) if last else None
    if turns is not None:
        return result(k, turns)
    length = len(context[last].content)
    keep = _largest_fitting(0, length, lambda c: tokens(k, last, length - c) <= budget)
    if keep is None:
        return result(k, last, length, overflow=True)
    return result(k, last, length - keep)


# ----------------------------------------------------------------------------- answers

_CHOICE_WORDS = {"first": FIRST, "one": FIRST, "1": FIRST, "a": FIRST,
                 "second": SECOND, "two": SECOND, "2": SECOND, "b": SECOND}
_MARKDOWN = re.compile(r"[*_`#>|]+")
_MARKER = re.compile(
    r"\b(?:final\s+answer|answer|verdict|preference|preferred(?:\s+response)?|choice|decision|winner|better\s+response)"
    r"\s*(?:is|would\s+be|:|=|-)?\s*:?", re.IGNORECASE)
_HEAD = re.compile(
    r"^[\s\"'(\[:\-.]*(?:the\s+)?(?:(?:response|option|output|assistant|answer|completion|candidate)\s*)?"
    r"[(\[#]?\s*(?:(first|second|one|two)\b|([12ab])(?=\s*(?:$|[.,;:!?)\]\n\"'])))",
    re.IGNORECASE)
_MENTION = re.compile(
    r"\b(first|second)\b|\b(?:response|option|output|candidate)\s*[(\[#]?\s*([12ab])\b", re.IGNORECASE)
_NO_CHOICE = re.compile(r"^[\s\W]*(?:both|neither|tie|equal|none|cannot|can't|unsure)\b", re.IGNORECASE)


def _head_choice(text: str) -> str | None:
    if _NO_CHOICE.match(text):
        return None
    m = _HEAD.match(text)
    if not m:
        return None
    return _CHOICE_WORDS[(m.group(1) or m.group(2)).lower()]


def parse_choice(text: str) -> str | None:
    """``"First"``, ``"Second"`` or None (no single clear answer) from a model's reply.

    Rules, in order: the text after the last answer marker ("Answer:", "Final
    answer", "Preferred response is"...); a short reply read whole ("second.",
    "Response 1", "(B)"); the last non-empty line when it names exactly one side.
    """
    clean = _MARKDOWN.sub(" ", text or "").strip()
    if not clean:
        return None
    for m in reversed(list(_MARKER.finditer(clean))):
        choice = _head_choice(clean[m.end():])
        if choice:
            return choice
    if len(clean.split()) <= 5:
        choice = _head_choice(clean)
        if choice:
            return choice
    lines = [ln for ln in clean.splitlines() if ln.strip()]
    named = {_CHOICE_WORDS[(a or b).lower()] for a, b in _MENTION.findall(lines[-1])}
    return named.pop() if len(named) == 1 else None


def p_first(logprobs: Mapping[str, float], choices: Sequence[str] = CHOICES) -> float | None:
    """P(first) = softmax over the two choices' log-probs; None when they carry no information."""
    a, b = logprobs.get(choices[0]), logprobs.get(choices[1])
    if a is None or b is None or math.isnan(a) or math.isnan(b) or (a == -math.inf and b == -math.inf):
        return None
    if a == b:
        return 0.5
    d = b - a
    if d > 0:
        e = math.exp(-d) if d < 745 else 0.0
        return e / (1.0 + e)
    return 1.0 / (1.0 + math.exp(d)) if d > -745 else 1.0


def choice_to_p(choice: str | None) -> float | None:
    """A parsed hard choice as a probability (1.0 first, 0.0 second, None failed)."""
    return None if choice is None else (1.0 if choice == FIRST else 0.0)


def score_choices(llm: LLM, chats: Sequence[Sequence[Message]]) -> list[float | None]:
    """One batched ``choice_logprobs`` call over First/Second -> P(first) per chat."""
    if not chats:
        return []
    return [p_first(lp) for lp in llm.choice_logprobs(list(chats), list(CHOICES))]


# ----------------------------------------------------------------------------- retries


@dataclass(frozen=True)
class Parsed(Generic[T]):
    """One generation's outcome: the parsed value (None = failed after all tries) and its text.

    ``tries``: requests made for it (1 when identical retries were answered by the
    first reply); ``finish_reason``: of the last reply ("length" = it hit the cap);
    ``sent``: how many of the tries the LLM's request cache did not answer.
    """

    value: T | None
    text: str
    tries: int
    completion_tokens: int
    finish_reason: str = "stop"
    sent: int = 0


def reply_reserve(llm: LLM, max_tokens: int, margin: int = 0) -> int:
    """Tokens a prompt must leave free for a reply capped at ``max_tokens``: the cap, but at most
    half of ``llm.context_length`` (the backends keep at least half the context for the prompt and
    cap the reply at what is left), plus ``margin``."""
    return min(int(max_tokens), llm.context_length // 2) + int(margin)


def generate_parsed(llm: LLM, chats: Sequence[Sequence[Message]], params: GenerationParams,
                    parse: Callable[[str], T | None], *, tries: int = 4,
                    retry_temperature: float | None = None) -> list[Parsed[T]]:
    """Generate for every chat in one batch; retry the unparseable ones, in one batch per try.

    ``retry_temperature=None`` (the SynthesizeMe reference's behaviour: its
    ``repeat_dspy_call`` retries at temperature 0.0 x (0.001 + i/4) = 0 with
    every request cached) makes every retry the identical request, which the
    cache answers with the same reply; so no retry is sent and an unparseable
    first reply is final. A number re-samples instead: try ``r`` > 0 uses seed
    ``item_seed(params.seed, "retry", r)`` and a temperature of at least
    ``retry_temperature``. After ``tries`` tries the value is None: the caller
    counts a failed judgment (the reference scores it as a tie).
    """
    texts = [""] * len(chats)
    used = [0] * len(chats)
    spent = [0] * len(chats)
    finish = ["stop"] * len(chats)
    sent = [0] * len(chats)
    values: list[T | None] = [None] * len(chats)
    pending = list(range(len(chats)))
    rounds = max(tries, 1) if retry_temperature is not None else 1
    for r in range(rounds):
        if not pending:
            break
        p = params if r == 0 else replace(params, seed=item_seed(params.seed, "retry", r),
                                          temperature=max(params.temperature, float(retry_temperature or 0.0)))
        still: list[int] = []
        for i, comp in zip(pending, llm.generate([chats[i] for i in pending], p), strict=True):
            texts[i], used[i], finish[i] = comp.text, r + 1, comp.finish_reason
            spent[i] += comp.completion_tokens
            sent[i] += int(not getattr(comp, "cached", False))
            values[i] = parse(comp.text)
            if values[i] is None:
                still.append(i)
        pending = still
    return [Parsed(values[i], texts[i], used[i], spent[i], finish[i], sent[i]) for i in range(len(chats))]


# ----------------------------------------------------------------------------- counters


class JudgeStats:
    """Per-user counters (dropped history items, truncations, failed judgments...)."""

    def __init__(self) -> None:
        self.per_user: dict[str, Counter[str]] = {}

    def add(self, user_id: str, **counts: int) -> None:
        c = self.per_user.setdefault(user_id, Counter())
        for k, v in counts.items():
            c[k] += int(v)

    def add_fit(self, user_id: str, fitted: FittedPrompt) -> None:
        self.add(user_id, prompts=1, items_dropped=fitted.items_dropped, turns_dropped=fitted.turns_dropped,
                 truncated_conversations=int(fitted.truncated), overflow_prompts=int(fitted.overflow))

    def as_usage(self) -> dict[str, Any]:
        totals: Counter[str] = Counter()
        for c in self.per_user.values():
            totals.update(c)
        return {"totals": dict(sorted(totals.items())),
                "per_user": {u: dict(sorted(c.items())) for u, c in sorted(self.per_user.items())}}
