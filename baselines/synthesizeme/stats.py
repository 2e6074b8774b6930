"""Per-user counters and notes, per-phase LLM usage, and the per-phase progress bars.

Counters (per user, summed over fit and predict) use the shared
:class:`~personalrewardbench.judging.JudgeStats`:
- ``prompts``, ``items_dropped`` (worked examples left out of judge prompts to
  fit the context), ``turns_dropped``, ``truncated_conversations``,
  ``overflow_prompts`` (from the shared prompt fitting);
- ``bootstrap_attempts``, ``verified_traces`` (over every bootstrap pass);
- ``failed_fit_judgments`` (unparseable while bootstrapping or scoring
  candidates; scored wrong, as the reference's tie), ``failed_predict_judgments``
  (returned as None), ``retries`` (re-sampled retries sent), ``judge_replies_capped``;
- persona writer: ``failed_personas`` (no persona in the reply), ``personas_unlabeled``
  (a bare description without the 'Persona:' label, used whole), ``personas_capped``
  (the reply hit ``max_persona_tokens``; without its label it gives no persona, never
  the reasoning text), ``personas_flagged`` and one ``persona_<flag>`` per flag of
  :func:`persona_flags` (empty, capped, echo, repetitive): personas that are not personas;
- ``persona_examples_dropped`` (the user's past judgments left out of the writer's
  prompt), ``persona_program_examples_dropped`` (the program's worked examples left
  out), ``candidates_scored``.
Notes: the user's ``split`` rule, whether a search stopped early, the persona flags.
``phases``: per phase, LLM batches, judgments asked, requests answered (``calls``),
``cache_hits``, requests sent (``sent`` = calls - cache_hits), prompt and completion tokens.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from tqdm.auto import tqdm

from personalrewardbench.judging import FittedPrompt, JudgeStats

USAGE_FIELDS = ("calls", "cache_hits", "prompt_tokens", "completion_tokens")
_ECHO = re.compile(r"truly preferred|true user preference|preference\s*:\s*\[\[|^\s*(?:first|second)\s*[.!]?\s*$",
                   re.IGNORECASE)


def persona_flags(persona: str, *, capped: bool) -> list[str]:
    """Why a persona is not a usable persona, if it is not (an empty list for a good one).

    - ``empty``: no text;
    - ``capped``: the writer's reply hit its token cap;
    - ``echo``: it repeats the prompt's labels ("The person truly preferred: First",
      "Preference: [[Second]]") or is a bare First/Second;
    - ``repetitive``: fewer than half of its word 4-grams are distinct (at least 20 words),
      the mark of a reply stuck in a loop.
    """
    flags = []
    text = persona.strip()
    if not text:
        flags.append("empty")
    if capped:
        flags.append("capped")
    if text and _ECHO.search(text):
        flags.append("echo")
    words = text.lower().split()
    if len(words) >= 20:
        grams = [tuple(words[i:i + 4]) for i in range(len(words) - 3)]
        if len(set(grams)) < 0.5 * len(grams):
            flags.append("repetitive")
    return flags


class PhaseBars:
    """One tqdm bar per phase (bootstrap, search rounds, persona, predict): LLM batches, with the
    judgments, requests sent and tokens so far in the postfix."""

    def __init__(self, enabled: bool, n_users: int) -> None:
        self.enabled, self.n_users = enabled, n_users
        self.bar: Any = None
        self.phase: str | None = None

    def update(self, phase: str, batches: int, totals: dict[str, int]) -> None:
        if not self.enabled:
            return
        if phase != self.phase:
            self.close()
            self.phase = phase
            self.bar = tqdm(desc=f"synthesizeme {phase} ({self.n_users} users)", unit="llm batch")
        self.bar.update(batches)
        self.bar.set_postfix(judgments=totals["judgments"], sent=totals["sent"], cached=totals["cache_hits"],
                             prompt_tok=totals["prompt_tokens"], completion_tok=totals["completion_tokens"],
                             refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar, self.phase = None, None


class RunStats:
    def __init__(self) -> None:
        self.counts = JudgeStats()
        self.batches: Counter[str] = Counter()  # phase -> LLM batch calls (retry batches included)
        self.phases: dict[str, Counter[str]] = {}
        self.notes: dict[str, dict[str, Any]] = {}
        self.bars = PhaseBars(False, 0)

    def add(self, user_id: str, **counts: int) -> None:
        self.counts.add(user_id, **counts)

    def add_fit(self, user_id: str, fitted: FittedPrompt) -> None:
        self.counts.add_fit(user_id, fitted)

    def note(self, user_id: str, **info: Any) -> None:
        self.notes.setdefault(user_id, {}).update(info)

    def get(self, user_id: str, key: str) -> int:
        return self.counts.per_user.get(user_id, Counter())[key]

    @staticmethod
    def usage_snapshot(llm: Any) -> dict[str, int]:
        usage = getattr(llm, "usage", None)
        return {k: int(getattr(usage, k, 0) or 0) for k in USAGE_FIELDS}

    def record_phase(self, phase: str, llm: Any, before: dict[str, int], *, batches: int, judgments: int,
                     capped: int = 0) -> None:
        """Add one generate-parse round's LLM batches, requests and tokens to ``phase``."""
        after = self.usage_snapshot(llm)
        c = self.phases.setdefault(phase, Counter())
        for k in USAGE_FIELDS:
            c[k] += after[k] - before[k]
        c["sent"] = c["calls"] - c["cache_hits"]
        c["llm_batches"] += batches
        c["judgments"] += judgments
        c["replies_capped"] += capped
        self.batches[phase] += batches
        self.bars.update(phase, batches, c)

    def usage(self) -> dict[str, Any]:
        out = self.counts.as_usage()
        for uid, info in self.notes.items():
            out["per_user"].setdefault(uid, {}).update(info)
        out["llm_batches"] = dict(sorted(self.batches.items()))
        out["phases"] = {p: dict(sorted(c.items())) for p, c in self.phases.items()}
        return out
