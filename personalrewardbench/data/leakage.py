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

Signals 3-5 say nothing about which side wins by themselves; their direction is learned from
the train/val pairs of all users (the same signals computed on those groups, majority vote).
Without evidence, 3 and 4 default to "the response that reappears is the chosen one" and 5 to
silence.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from personalrewardbench.data.schema import Context
from personalrewardbench.data.text import normalize_text, serialized_message

SIGNALS = ("repeats_history_pair", "response_judged_in_history", "response_in_context",
           "response_repeated_in_split", "response_serialized")
LABEL_FREE = ("response_in_context", "response_repeated_in_split", "response_serialized")
DEFAULT_DIRECTIONS = {"response_in_context": 1, "response_repeated_in_split": 1, "response_serialized": 0}
SIGNAL_HELP = {
    "repeats_history_pair": "test pair repeats a train/val pair of the user",
    "response_judged_in_history": "a response was judged in the user's train/val pairs",
    "response_in_context": "a response appears as an assistant turn in a pair's context (its own included)",
    "response_repeated_in_split": "a response appears in more of the user's test pairs than the other",
    "response_serialized": "exactly one response is a serialized message object",
}

CtxKey = tuple[tuple[str, str], ...]
ItemKey = tuple[CtxKey, tuple[str, str]]


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def context_key(context: Context) -> CtxKey:
    """A context as comparable data: ((role, normalized content), ...)."""
    return tuple((m.role, normalize_text(m.content)) for m in context)


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
            out.append(s)
        return out


def decide(signals: Mapping[str, int], directions: Mapping[str, int]) -> tuple[int, str | None]:
    """(+1 a / -1 b / 0 undecided, the deciding signal): the first signal in SIGNALS order that
    speaks, label-free ones times their learned direction."""
    for name in SIGNALS:
        v = signals.get(name, 0) * (directions.get(name, 0) if name in LABEL_FREE else 1)
        if v:
            return v, name
    return 0, None


def learn_directions(groups: Iterable[tuple[UserStructure, Sequence[Item], Sequence[int]]]) -> dict[str, int]:
    """Direction of each label-free signal, by majority over labeled groups: each entry is a user's
    structure, a group of that user's labeled items (e.g. all train pairs) and their labels
    (+1: ``a`` was chosen, -1: ``b``). Ties and no evidence keep DEFAULT_DIRECTIONS."""
    votes: Counter[str] = Counter()
    for structure, items, labels in groups:
        for sig, lab in zip(structure.signals(items, use_history_labels=False), labels, strict=True):
            for name in LABEL_FREE:
                votes[name] += sig[name] * lab
    return {name: _sign(votes[name]) or DEFAULT_DIRECTIONS[name] for name in LABEL_FREE}


def coin(seed: int, user_id: str, item: Item) -> int:
    """A seeded fair coin for an undecided pair, the same for both orders: +1 (a) or -1 (b)."""
    ck, (x, y) = item.key()
    h = hashlib.sha256(f"leak-probe\0{seed}\0{user_id}".encode("utf-8", "surrogatepass"))
    for role, text in ck:
        h.update(f"\0{role}\0{text}".encode("utf-8", "surrogatepass"))
    h.update(f"\0{x}\0{y}".encode("utf-8", "surrogatepass"))
    winner = x if h.digest()[0] & 1 else y
    return 1 if normalize_text(item.a) == winner else -1
