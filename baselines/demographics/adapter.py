"""demographics: an LLM judge that sees the user's survey profile (PRISM) before judging.

``profile="demographics"`` (default, the paper's demographics prompting): the
PRISM survey's demographic fields only (:data:`DEMOGRAPHIC_FIELDS`: age, gender,
employment, education, marital status, English proficiency, religion, ethnicity,
countries of residence and birth). ``profile="full"``: every survey answer except
bookkeeping (ids, consent flags, timings), which adds the user's own system
prompt (``system_string``), self-description, stated preferences and LLM use.
Values that are None, NaN, empty or "nan" are missing (:mod:`personalrewardbench.missing`)
and never shown. The profile is never dropped to fit the context budget: the
conversation being judged is cut first. A user without a profile is judged with
a line saying none is available (counted per user as ``no_profile``); on a
dataset with no profiles at all the harness reports the method as not
applicable (capability ``profile``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from personalrewardbench.data.schema import UserHistory
from personalrewardbench.llm_judge import HUMAN_JUDGE_REQUESTS, LLMJudgeMethod
from personalrewardbench.methods import MethodError
from personalrewardbench.missing import is_missing, present_text

HUMAN_JUDGE_SYSTEM = (
    "You are given a conversation and two completions of it written by different AI models. A human judge "
    "compared them; decide which one that judge is more likely to prefer. You also get what the judge "
    "reported about themselves in a survey. Use it to speculate: form one to three hypotheses about the "
    "judge's preferences or persona, and weigh them before deciding. Being wrong about a hypothesis is "
    "fine; the point is to explore what might be true."
)
SYSTEM = (
    "You predict the choices of one particular person. You are given what this person said about "
    "themselves in a survey. Use it to judge which of two replies this person would pick."
)
PROFILE_TEMPLATES = {
    "profile_intro": "What this person said about themselves in a survey:",
    "profile_missing": "No survey answers are available for this person.",
    "profile_end": "# Comparison",
}
TEMPLATES = {
    **PROFILE_TEMPLATES,
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
PROFILES = ("demographics", "full")
# The PRISM survey's demographic fields: (label, paths tried in order; "a.b" reads a nested answer).
DEMOGRAPHIC_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Age", ("age",)),
    ("Gender", ("gender",)),
    ("Employment status", ("employment_status",)),
    ("Education", ("education",)),
    ("Marital status", ("marital_status",)),
    ("English proficiency", ("english_proficiency",)),
    ("Religion", ("religion.simplified", "religion.categorised", "religion.self_described", "religion")),
    ("Ethnicity", ("ethnicity.simplified", "ethnicity.categorised", "ethnicity.self_described", "ethnicity")),
    ("Country of residence", ("location.reside_country",)),
    ("Country of birth", ("location.birth_country",)),
)


def _label(key: str) -> str:
    return key.replace("_", " ").strip().capitalize()


def _value(value: Any) -> str | None:
    if is_missing(value):
        return None
    if isinstance(value, Mapping):
        parts = [f"{_label(str(k)).lower()}: {v}" for k, raw in value.items()
                 if str(k) not in SKIP_KEYS and (v := _value(raw)) is not None]
        return "; ".join(parts) or None
    if isinstance(value, list | tuple):
        parts = [v for x in value if (v := _value(x)) is not None]
        return ", ".join(parts) or None
    text = present_text(value)
    return " ".join(text.split()) if text is not None else None


def _lookup(profile: Mapping[str, Any], path: str) -> Any:
    node: Any = profile
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def render_profile(profile: Mapping[str, Any]) -> str:
    """Every answered survey field (``profile="full"``): one ``- Field: value`` line each, in the survey's order."""
    lines = [f"- {_label(str(k))}: {v}" for k, raw in profile.items()
             if str(k) not in SKIP_KEYS and (v := _value(raw)) is not None]
    return "\n".join(lines)


def render_demographics(profile: Mapping[str, Any]) -> str:
    """The demographic fields (:data:`DEMOGRAPHIC_FIELDS`) that are answered, one ``- Field: value`` line each."""
    lines = []
    for label, paths in DEMOGRAPHIC_FIELDS:
        for path in paths:
            v = _value(_lookup(profile, path))
            if v is not None:
                lines.append(f"- {label}: {v}")
                break
    return "\n".join(lines)


class DemographicsJudge(LLMJudgeMethod):
    """An LLM judge with the user's survey profile in its prompt."""

    name: ClassVar[str] = "demographics"
    capabilities: ClassVar[frozenset[str]] = frozenset({"llm", "pairwise", "personalized", "profile"})
    wordings: ClassVar[dict[str, dict[str, str]]] = {
        "human-judge": {"system": HUMAN_JUDGE_SYSTEM, **PROFILE_TEMPLATES, **HUMAN_JUDGE_REQUESTS},
        "plain": {"system": SYSTEM, **TEMPLATES},
    }
    min_items: ClassVar[int] = 1

    def __init__(self, variant: str = "cot", max_reasoning_tokens: int = 8192, answer: str = "parse",
                 tries: int = 4, retry_temperature: float | None = None, wording: str = "human-judge",
                 profile: str = "demographics") -> None:
        super().__init__(variant=variant, max_reasoning_tokens=max_reasoning_tokens, answer=answer, tries=tries,
                         retry_temperature=retry_temperature, wording=wording)
        if profile not in PROFILES:
            raise MethodError(f"{self.name}: unknown profile {profile!r}; use one of {', '.join(PROFILES)}")
        self.profile = profile
        self._profiles: dict[str, str] = {}

    def fit_user(self, history: UserHistory) -> None:
        render = render_demographics if self.profile == "demographics" else render_profile
        text = render(history.profile) if isinstance(history.profile, Mapping) else ""
        self._profiles[history.user_id] = text
        self.stats.add(history.user_id, no_profile=int(not text))

    def context_items(self, user_id: str) -> Sequence[str]:
        return (self._profiles.get(user_id, ""),)

    def render_preamble(self, items: Sequence[str]) -> str:
        text = items[0] if items else ""
        head = [PROFILE_TEMPLATES["profile_intro"], text] if text else [PROFILE_TEMPLATES["profile_missing"]]
        return "\n".join(head) + "\n\n" + PROFILE_TEMPLATES["profile_end"]
