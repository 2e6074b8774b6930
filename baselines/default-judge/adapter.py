"""default-judge: a non-personalized LLM judge (the same prompt for every user).

Default wording ``human-judge``: the SynthesizeMe reference's default judge, in
this project's words: which response the human judge is more likely to prefer,
after one to three guesses about the judge. ``plain``: this project's earlier
wording, which reply is better overall.
"""

from __future__ import annotations

from typing import ClassVar

from personalrewardbench.llm_judge import HUMAN_JUDGE_REQUESTS, LLMJudgeMethod

HUMAN_JUDGE_SYSTEM = (
    "You are given a conversation and two completions of it written by different AI models. A human judge "
    "compared them; decide which one that judge is more likely to prefer. Nothing is known about the judge "
    "beyond what the conversation shows, so speculate: form one to three hypotheses about the judge's "
    "preferences or persona from the conversation and the completions, and weigh them before deciding. "
    "Being wrong about a hypothesis is fine; the point is to explore what might be true."
)
PLAIN_SYSTEM = (
    "You compare two candidate replies written by an AI assistant for the same conversation. "
    "Decide which reply is better overall: more helpful, more accurate, clearer and better suited "
    "to what was asked."
)


class DefaultJudge(LLMJudgeMethod):
    """Judges without any user history or profile."""

    name: ClassVar[str] = "default-judge"
    wordings: ClassVar[dict[str, dict[str, str]]] = {
        "human-judge": {"system": HUMAN_JUDGE_SYSTEM, **HUMAN_JUDGE_REQUESTS},
        "plain": {"system": PLAIN_SYSTEM},
    }
