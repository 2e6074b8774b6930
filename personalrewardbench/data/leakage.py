"""Label-free structure signals: how much of a test label can be read off a benchmark's shape.

Shared by ``prb data audit`` (which scores the signals against the test labels) and the
``leak-probe`` baseline (which uses them to predict). Everything here uses only what a method is
legally given: a user's labeled train/val pairs (``fit``) and unlabeled test pairs (``predict``,
many queries of a user at once). Texts are compared in normalized form
(:func:`~personalrewardbench.data.text.normalize_text`).

Signals for an unordered test pair {a, b} of one user, in the order they decide (each is +1
for a, -1 for b, 0 when silent):

1. ``repeats_history_pair``: the pair (same context, same two responses) is one of the user's
   labeled train/val pairs: its label.
2. ``response_judged_in_history``: a or b was chosen/rejected in the user's train/val pairs:
   the response with more wins minus losses there.
3. ``response_in_context``: a or b appears as an assistant turn in the context of one of the
   user's pairs (any split, the item's own included): e.g. the chosen answer continuing the
   conversation, or a builder that put the current turn's pick into the conversation so far.
4. ``response_repeated_in_split``: a or b appears in more of the user's pairs of the same
   group (the test queries seen together) than the other: e.g. the chosen answer of a turn
   paired with every lower-rated one.
5. ``response_serialized``: exactly one of a, b is a serialized message object (a CSV round
   trip that touched one side only).
6. One signal per format mark of :mod:`personalrewardbench.data.marks` (``role_prefix``,
   ``special_tokens``, ``byte_order_mark``, ``format_characters``, ``not_nfc``,
   ``carriage_returns``, ``leading_whitespace``, ``trailing_whitespace``, ...): a or b carries
   more of the mark (a trailing space, a decomposed accent, an ``"Assistant:"`` prefix, ...).

Signals 3-6 say nothing about which side wins by themselves; their direction is learned from
the train/val pairs of all users (the same signals computed on those groups, majority vote).
Without evidence, 3 and 4 default to "the response that reappears is the chosen one"; 5 and the
format marks stay silent. ``FORMAT_SIGNALS`` (5 and 6) are the surface of the texts alone.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from personalrewardbench.data.marks import MARK_HELP, MARK_NAMES, mark_signals
from personalrewardbench.data.schema import Context
from personalrewardbench.data.text import comparison_context, normalize_text, serialized_message

FORMAT_SIGNALS = ("response_serialized", *MARK_NAMES)
SIGNALS = ("repeats_history_pair", "response_judged_in_history", "response_in_context",
           "response_repeated_in_split", *FORMAT_SIGNALS)
LABEL_FREE = ("response_in_context", "response_repeated_in_split", *FORMAT_SIGNALS)
DEFAULT_DIRECTIONS = {"response_in_context": 1, "response_repeated_in_split": 1, **dict.fromkeys(FORMAT_SIGNALS, 0)}
SIGNAL_HELP = {
    "repeats_history_pair": "test pair repeats a train/val pair of the user",
    "response_judged_in_history": "a response was judged in the user's train/val pairs",
    "response_in_context": "a response appears as an assistant turn in a pair's context (its own included)",
    "response_repeated_in_split": "a response appears in more of the user's test pairs than the other",
    "response_serialized": "exactly one response is a serialized message object",
    **{k: f"format mark: {v}, more on one side" for k, v in MARK_HELP.items()},
}

DIRECTION_ALPHA = 0.05  # significance a format signal's direction needs (directions_from_votes)

CtxKey = tuple[tuple[str, str], ...]
ItemKey = tuple[CtxKey, tuple[str, str]]


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def context_key(context: Context) -> CtxKey:
    """A context as comparable data: ((role, normalized content), ...), messages that normalize to
    nothing (an empty system prompt) left out (:func:`~personalrewardbench.data.text.comparison_context`)."""
    return comparison_context(context)


@dataclass(frozen=True, slots=True)
class Item:
    """One unordered pair as a method may see it: a context and two responses (a, b), no label."""

    context: Context
    a: str
    b: str

    def key(self) -> ItemKey:
        """(context key, the two normalized responses sorted): the same for both orders."""
        na, nb = normalize_text(self.a), normalize_text(self.b)
        return context_key(self.context), (min(na, nb), max(na, nb))


class UserStructure:
    """One user's labeled history (train/val pairs as (context, chosen, rejected)) and the signals
    it gives for a group of unlabeled items."""

    def __init__(self, history: Iterable[tuple[Context, str, str]] = ()) -> None:
        self.label: dict[ItemKey, str] = {}
        self.judged: Counter[str] = Counter()
        self.history_contexts: set[CtxKey] = set()
        for context, chosen, rejected in history:
            item = Item(context, chosen, rejected)
            self.label[item.key()] = normalize_text(chosen)
            self.judged[normalize_text(chosen)] += 1
            self.judged[normalize_text(rejected)] -= 1
            self.history_contexts.add(context_key(context))

    def signals(self, items: Sequence[Item], *, use_history_labels: bool = True) -> list[dict[str, int]]:
        """For each item, signal -> +1 (a), -1 (b) or 0, the items taken as one group seen together.

        ``use_history_labels=False`` gives the label-free signals only (for learning directions
        on the history itself, where the history's labels would be the answer).
        """
        keys = [it.key() for it in items]
        in_contexts: dict[str, set[CtxKey]] = defaultdict(set)
        for ck in self.history_contexts | {k[0] for k in keys}:
            for role, text in ck:
                if role == "assistant":
                    in_contexts[text].add(ck)
        counts: Counter[str] = Counter()
        for _, (x, y) in dict.fromkeys(keys):  # distinct pairs, in order
            counts[x] += 1
            counts[y] += 1
        out = []
        for it, (ck, _) in zip(items, keys, strict=True):
            na, nb = normalize_text(it.a), normalize_text(it.b)
            s = dict.fromkeys(SIGNALS, 0)
            if use_history_labels:
                if (lab := self.label.get((ck, (min(na, nb), max(na, nb))))) is not None:
                    s["repeats_history_pair"] = 1 if lab == na else -1
                s["response_judged_in_history"] = _sign(self.judged[na] - self.judged[nb])
            s["response_in_context"] = _sign(bool(in_contexts[na]) - bool(in_contexts[nb]))
            s["response_repeated_in_split"] = _sign(counts[na] - counts[nb])
            s["response_serialized"] = _sign((serialized_message(it.a) is not None)
                                             - (serialized_message(it.b) is not None))
            s.update(mark_signals(it.a, it.b))
            out.append(s)
        return out


def decide(signals: Mapping[str, int], directions: Mapping[str, int],
           names: Sequence[str] = SIGNALS) -> tuple[int, str | None]:
    """(+1 a / -1 b / 0 undecided, the deciding signal): the first signal of ``names`` (in SIGNALS
    order by default) that speaks, label-free ones times their learned direction."""
    for name in names:
        v = signals.get(name, 0) * (directions.get(name, 0) if name in LABEL_FREE else 1)
        if v:
            return v, name
    return 0, None


def direction_votes(groups: Iterable[tuple[UserStructure, Sequence[Item], Sequence[int]]]
                    ) -> dict[str, tuple[int, int]]:
    """Label-free signal -> (labeled items where the side it points at was chosen, items where that
    side was rejected), over labeled groups: each entry is a user's structure, a group of that
    user's labeled items (e.g. all train pairs) and their labels (+1: ``a`` was chosen, -1: ``b``)."""
    agree: Counter[str] = Counter()
    disagree: Counter[str] = Counter()
    for structure, items, labels in groups:
        for sig, lab in zip(structure.signals(items, use_history_labels=False), labels, strict=True):
            for name in LABEL_FREE:
                if v := sig[name] * lab:
                    (agree if v > 0 else disagree)[name] += 1
    return {name: (agree[name], disagree[name]) for name in LABEL_FREE}


def directions_from_votes(votes: Mapping[str, tuple[int, int]], alpha: float = DIRECTION_ALPHA) -> dict[str, int]:
    """Direction per label-free signal from its (chosen, rejected) votes (:func:`direction_votes`).

    ``response_in_context`` and ``response_repeated_in_split``: the majority; ties and no evidence
    keep DEFAULT_DIRECTIONS (+1: a builder's pick is what reappears). The format signals have no
    natural direction and there are many of them, so a majority of a handful of pairs would be
    noise: each takes the majority only when a two-sided sign test rejects "either side equally
    likely" at ``alpha`` (``scipy.stats.binomtest(k, n, 0.5).pvalue < alpha``; unanimous votes need
    at least 6 pairs), and stays silent (0) otherwise.
    """
    from scipy.stats import binomtest

    out = {}
    for name in LABEL_FREE:
        k, m = votes.get(name, (0, 0))
        if name in FORMAT_SIGNALS:
            out[name] = _sign(k - m) if k != m and binomtest(k, k + m, 0.5).pvalue < alpha else 0
        else:
            out[name] = _sign(k - m) or DEFAULT_DIRECTIONS[name]
    return out


def learn_directions(groups: Iterable[tuple[UserStructure, Sequence[Item], Sequence[int]]]) -> dict[str, int]:
    """Direction of each label-free signal, by majority over labeled groups (see
    :func:`direction_votes`). Ties and no evidence keep DEFAULT_DIRECTIONS."""
    return directions_from_votes(direction_votes(groups))


def coin(seed: int, user_id: str, item: Item) -> int:
    """A seeded fair coin for an undecided pair, the same for both orders: +1 (a) or -1 (b)."""
    ck, (x, y) = item.key()
    h = hashlib.sha256(f"leak-probe\0{seed}\0{user_id}".encode("utf-8", "surrogatepass"))
    for role, text in ck:
        h.update(f"\0{role}\0{text}".encode("utf-8", "surrogatepass"))
    h.update(f"\0{x}\0{y}".encode("utf-8", "surrogatepass"))
    winner = x if h.digest()[0] & 1 else y
    return 1 if normalize_text(item.a) == winner else -1
