"""demographics: an LLM judge that sees the user's survey profile (PRISM) before judging.

The profile is shown as the survey has it (age, gender, region, education,
stated preferences, self-description...), one field a line; bookkeeping fields
(ids, consent flags, timings) are left out. The profile is never dropped to fit
the context budget: the conversation being judged is cut first. A user without
a profile is judged with a line saying none is available (counted per user as
``no_profile``); on a dataset with no profiles at all the harness reports the
method as not applicable (capability ``profile``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from personalrewardbench.data.schema import UserHistory
from personalrewardbench.llm_judge import LLMJudgeMethod

SYSTEM = (
    "You predict the choices of one particular person. You are given what this person said about "
    "themselves in a survey. Use it to judge which of two replies this person would pick."
)
TEMPLATES = {
    "profile_intro": "What this person said about themselves in a survey:",
    "profile_missing": "No survey answers are available for this person.",
    "profile_end": "# Comparison",
    "direct_request": (
        "Which of the two responses would this person prefer as the reply to the last turn? "
        "Reply with one word: First or Second."
    ),
    "cot_request": (
        "Which of the two responses would this person prefer as the reply to the last turn? "
        "Think briefly about how their background and stated preferences bear on it, then end with a "
        "line that reads exactly 'Answer: First' or 'Answer: Second'."
    ),
    "cot_followup": "So which response would this person prefer? Reply with one word: First or Second.",
}
# Survey bookkeeping, not about the person.
SKIP_KEYS = {"user_id", "study_id", "study_locale", "survey_only", "num_completed_conversations", "consent",
             "consent_age", "generated_datetime", "timing_duration_s", "timing_duration_mins",
             "included_in_balanced_subset", "order_stated_prefs"}


def _label(key: str) -> str:
    return key.replace("_", " ").strip().capitalize()


def _value(value: Any) -> str | None:
    if value is None or value == "" or value == [] or value == {}:
        return None
    if isinstance(value, Mapping):
        parts = [f"{_label(str(k)).lower()}: {v}" for k, raw in value.items()
                 if str(k) not in SKIP_KEYS and (v := _value(raw)) is not None]
        return "; ".join(parts) or None
    if isinstance(value, list | tuple):
        parts = [v for x in value if (v := _value(x)) is not None]
        return ", ".join(parts) or None
    return " ".join(str(value).split())


def render_profile(profile: Mapping[str, Any]) -> str:
    """One ``Field: value`` line per answered survey field, in the survey's order."""
    lines = [f"- {_label(str(k))}: {v}" for k, raw in profile.items()
             if str(k) not in SKIP_KEYS and (v := _value(raw)) is not None]
    return "\n".join(lines)


class DemographicsJudge(LLMJudgeMethod):
    """An LLM judge with the user's survey profile in its prompt."""

    name: ClassVar[str] = "demographics"
    capabilities: ClassVar[frozenset[str]] = frozenset({"llm", "pairwise", "personalized", "profile"})
    system_prompt: ClassVar[str] = SYSTEM
    template_overrides: ClassVar[dict[str, str]] = TEMPLATES
    min_items: ClassVar[int] = 1

    def __init__(self, variant: str = "direct", max_reasoning_tokens: int = 256, answer: str = "logprobs",
                 tries: int = 4, retry_temperature: float = 0.7) -> None:
        super().__init__(variant=variant, max_reasoning_tokens=max_reasoning_tokens, answer=answer, tries=tries,
                         retry_temperature=retry_temperature)
        self._profiles: dict[str, str] = {}

    def fit_user(self, history: UserHistory) -> None:
        text = render_profile(history.profile) if history.profile else ""
        self._profiles[history.user_id] = text
        self.stats.add(history.user_id, no_profile=int(not text))

    def context_items(self, user_id: str) -> Sequence[str]:
        return (self._profiles.get(user_id, ""),)

    def render_preamble(self, items: Sequence[str]) -> str:
        text = items[0] if items else ""
        head = [TEMPLATES["profile_intro"], text] if text else [TEMPLATES["profile_missing"]]
        return "\n".join(head) + "\n\n" + TEMPLATES["profile_end"]
