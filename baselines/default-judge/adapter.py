"""default-judge: a non-personalized LLM judge (the same prompt for every user)."""

from __future__ import annotations

from typing import ClassVar

from personalrewardbench.llm_judge import LLMJudgeMethod

SYSTEM = (
    "You compare two candidate replies written by an AI assistant for the same conversation. "
    "Decide which reply is better overall: more helpful, more accurate, clearer and better suited "
    "to what was asked."
)


class DefaultJudge(LLMJudgeMethod):
    """Picks the generally better response; sees no user history or profile."""

    name: ClassVar[str] = "default-judge"
    system_prompt: ClassVar[str] = SYSTEM
