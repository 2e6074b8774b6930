"""Per-user counters and notes, and the number of LLM batch calls each phase issued.

Counters (per user, summed over fit and predict) use the shared
:class:`~personalrewardbench.judging.JudgeStats`:
- ``prompts``, ``items_dropped`` (worked examples left out of judge prompts to
  fit the context), ``turns_dropped``, ``truncated_conversations``,
  ``overflow_prompts`` (from the shared prompt fitting);
- ``bootstrap_attempts``, ``verified_traces`` (over every bootstrap pass);
- ``failed_fit_judgments`` (unparseable after all tries while bootstrapping or
  scoring candidates; scored wrong), ``failed_predict_judgments`` (returned as
  None), ``failed_personas``, ``personas_unlabeled`` (writer replies without the
  'Persona:' label, used whole), ``retries``;
- ``persona_examples_dropped`` (past judgments left out of the writer's prompt),
  ``candidates_scored``.
Notes: the user's ``split`` rule and whether a search stopped early.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from personalrewardbench.judging import FittedPrompt, JudgeStats


class RunStats:
    def __init__(self) -> None:
        self.counts = JudgeStats()
        self.batches: Counter[str] = Counter()  # phase -> LLM batch calls (retry batches included)
        self.notes: dict[str, dict[str, Any]] = {}

    def add(self, user_id: str, **counts: int) -> None:
        self.counts.add(user_id, **counts)

    def add_fit(self, user_id: str, fitted: FittedPrompt) -> None:
        self.counts.add_fit(user_id, fitted)

    def note(self, user_id: str, **info: Any) -> None:
        self.notes.setdefault(user_id, {}).update(info)

    def get(self, user_id: str, key: str) -> int:
        return self.counts.per_user.get(user_id, Counter())[key]

    def usage(self) -> dict[str, Any]:
        out = self.counts.as_usage()
        for uid, info in self.notes.items():
            out["per_user"].setdefault(uid, {}).update(info)
        out["llm_batches"] = dict(sorted(self.batches.items()))
        return out
