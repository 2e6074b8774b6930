"""Fitting a chat into a model's context window.

The rule (the same for every backend):

1. If the chat fits ``budget`` tokens, it is returned unchanged.
2. Whole messages are dropped from the middle, oldest first. The leading
   system message (if any) and the final message (the user turn that holds the
   responses to judge) are never dropped.
3. As a last resort the kept text is left-truncated (its beginning is cut,
   its end kept): first the final message, then the system message, each down
   to what is needed. A marker ``[...]`` shows where text was cut.

``fit_chat`` returns the fitted chat and whether anything was cut; backends
record that in :class:`~personalrewardbench.llm.base.Completion` and count it
in ``Usage.truncated_prompts``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from personalrewardbench.data.schema import Message

CUT_MARKER = "[...] "


def _left_cut(chat: list[Message], index: int, count: Callable[[Sequence[Message]], int], budget: int) -> bool:
    """Cut the start of ``chat[index]`` so the chat fits; True if it now fits."""
    msg = chat[index]
    text = msg.content

    def fits(keep: int) -> bool:
        trial = list(chat)
        trial[index] = Message(msg.role, CUT_MARKER + text[len(text) - keep:] if keep < len(text) else text)
        return count(trial) <= budget

    lo, hi = 0, len(text)  # largest kept suffix length that fits
    if not fits(0):
        chat[index] = Message(msg.role, "")
        return count(chat) <= budget
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    chat[index] = Message(msg.role, CUT_MARKER + text[len(text) - lo:] if lo < len(text) else text)
    return True


def fit_chat(chat: Sequence[Message], count: Callable[[Sequence[Message]], int],
             budget: int) -> tuple[tuple[Message, ...], bool]:
    """Fit ``chat`` into ``budget`` tokens as counted by ``count``; see the module doc for the rule."""
    msgs = list(chat)
    if budget <= 0 or not msgs or count(msgs) <= budget:
        return tuple(msgs), False
    first_droppable = 1 if msgs[0].role == "system" else 0
    # 2. drop whole middle messages, oldest first
    while len(msgs) - 1 > first_droppable and count(msgs) > budget:
        del msgs[first_droppable]
    if count(msgs) <= budget:
        return tuple(msgs), True
    # 3. left-truncate the final message, then the system message
    order = [len(msgs) - 1] + ([0] if first_droppable and len(msgs) > 1 else [])
    for index in order:
        if _left_cut(msgs, index, count, budget):
            break
    return tuple(msgs), True
