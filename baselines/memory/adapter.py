"""memory: an LLM judge that sees the user's earlier preferences before judging.

The user's train (and, by default, val) pairs are shown with the side the user
chose marked, newest first. Newest means latest in the user's source order
(``meta["source_position"]``, see :mod:`personalrewardbench.data.order`: the
published rows' order, Arena's ``tstamp``, PRISM's conversation and turn order,
summarize's batch order); for pairs without one, by a ``timestamp``/``tstamp``
field where every pair has one, else train before val in benchmark order. To
fit the context budget, whole comparisons are dropped oldest first; only when
none is left is the conversation being judged cut (``judging.fit_prompt``).

Default = the paper's memory baseline on the reference's default judge (chain of
thought, which response the human judge is more likely to prefer, answer parsed,
replies up to 8,192 tokens); see README.md for what is the paper's and what is ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from personalrewardbench.data.order import in_source_order, source_position
from personalrewardbench.data.schema import PreferencePair, UserHistory
from personalrewardbench.judging import render_labeled_pair
from personalrewardbench.llm_judge import HUMAN_JUDGE_REQUESTS, LLMJudgeMethod
from personalrewardbench.methods import MethodError

HUMAN_JUDGE_SYSTEM = (
    "You are given a conversation and two completions of it written by different AI models. A human judge "
    "compared them; decide which one that judge is more likely to prefer. Before the new comparison you see "
    "comparisons the same judge made earlier, each with the completion they picked. Use them to speculate: "
    "form one to three hypotheses about the judge's preferences or persona, and weigh them before deciding. "
    "Being wrong about a hypothesis is fine; the point is to explore what might be true."
)
SYSTEM = (
    "You predict the choices of one particular person. Before the new comparison you will see "
    "comparisons this person already made, each with the reply they picked. Work out what this "
    "person values from those picks, then say which reply they would pick in the new comparison."
)
HISTORY_TEMPLATES = {
    "history_intro": "Comparisons this person made before (most recent first):",
    "history_item": "# Past comparison {n}\n{comparison}",
    "history_end": "# New comparison",
}
TEMPLATES = {
    **HISTORY_TEMPLATES,
    "direct_request": (
        "Which of the two responses would this person prefer as the reply to the last turn? "
        "Reply with one word: First or Second."
    ),
    "cot_request": (
        "Which of the two responses would this person prefer as the reply to the last turn? "
        "Think briefly about what their past picks show, then end with a line that reads exactly "
        "'Answer: First' or 'Answer: Second'."
    ),
    "cot_followup": "So which response would this person prefer? Reply with one word: First or Second.",
}
TIME_KEYS = ("timestamp", "tstamp")


def newest_first(pairs: Sequence[PreferencePair]) -> list[PreferencePair]:
    """The user's history, most recent first (see the module doc for the rule)."""
    if pairs and all(source_position(p) is not None for p in pairs):
        return list(reversed(in_source_order(pairs)))
    for key in TIME_KEYS:
        stamps = [p.meta.get(key) if p.meta else None for p in pairs]
        if pairs and all(isinstance(s, int | float | str) and s != "" for s in stamps):
            try:
                order = sorted(range(len(pairs)), key=lambda i: (float(stamps[i]), i))
            except (TypeError, ValueError):
                continue
            return [pairs[i] for i in reversed(order)]
    return list(reversed(pairs))


class MemoryJudge(LLMJudgeMethod):
    """An LLM judge with the user's past preferences in its prompt."""

    name: ClassVar[str] = "memory"
    capabilities: ClassVar[frozenset[str]] = frozenset({"llm", "pairwise", "personalized"})
    wordings: ClassVar[dict[str, dict[str, str]]] = {
        "human-judge": {"system": HUMAN_JUDGE_SYSTEM, **HISTORY_TEMPLATES, **HUMAN_JUDGE_REQUESTS},
        "plain": {"system": SYSTEM, **TEMPLATES},
    }

    def __init__(self, variant: str = "cot", include_val: bool = True, max_history: int | None = None,
                 max_reasoning_tokens: int = 8192, answer: str = "parse", tries: int = 4,
                 retry_temperature: float | None = None, wording: str = "human-judge") -> None:
        super().__init__(variant=variant, max_reasoning_tokens=max_reasoning_tokens, answer=answer, tries=tries,
                         retry_temperature=retry_temperature, wording=wording)
        if max_history is not None and int(max_history) < 0:
            raise MethodError(f"memory: max_history must be >= 0 or unset (got {max_history})")
        self.include_val = bool(include_val)
        self.max_history = None if max_history is None else int(max_history)
        self._items: dict[str, list[str]] = {}

    def fit_user(self, history: UserHistory) -> None:
        pairs = list(history.train) + (list(history.val) if self.include_val else [])
        ordered = newest_first(pairs)
        if self.max_history is not None:
            ordered = ordered[: self.max_history]
        seed = int(getattr(getattr(self, "env", None), "seed", 0))
        self._items[history.user_id] = [render_labeled_pair(p, seed) for p in ordered]
        self.stats.add(history.user_id, history_items=len(ordered))

    def context_items(self, user_id: str) -> Sequence[str]:
        return self._items.get(user_id, ())

    def render_preamble(self, items: Sequence[str]) -> str:
        blocks = [HISTORY_TEMPLATES["history_item"].format(n=n, comparison=text) for n, text in enumerate(items, 1)]
        return "\n\n".join([HISTORY_TEMPLATES["history_intro"], *blocks, HISTORY_TEMPLATES["history_end"]])
