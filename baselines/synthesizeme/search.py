"""Steps 2 and 4: candidate demo sets and their selection on validation pairs.

Candidates, in scan order (bootstrap few-shot with random search):
- ``persona-only`` (step 4 only): no demos, the persona alone;
- ``labeled-only``: up to ``max_labeled_demos`` raw labeled pairs, no reasoning;
- ``unshuffled``: the verified traces in train order (up to ``max_bootstrapped_demos``),
  filled with raw labeled pairs up to ``max_labeled_demos`` demos;
- ``shuffle-k`` (k < ``num_candidates``): the train set in a seeded random order
  and a seeded random size (1..limit); the first ``size`` verified traces in that
  order, filled the same way.
Each candidate is scored on the user's validation examples (both orders):
percent accuracy, a failed judgment counting wrong. Scanning in order, the best
is replaced only by a strictly higher score (ties keep the earlier candidate);
the scan stops at the first candidate scoring at least ``stop_at_score``.

Users are per-user state machines advanced in lock-step rounds: in each round
every user still searching submits its next candidate, and all their judgments
go to the LLM together.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .bootstrap import labeled_sample
from .examples import Demo, Example, item_rng
from .judge import JudgeRequest, run_judgments
from .settings import Settings
from .stats import RunStats


@dataclass(frozen=True)
class Candidate:
    name: str
    demos: tuple[Demo, ...]


def _assemble(train: Sequence[Example], traces: dict[int, str], order: Sequence[int], size: int,
              fill_rng_key: tuple, settings: Settings, seed: int) -> tuple[Demo, ...]:
    augmented = [i for i in order if i in traces][:size]
    chosen = set(augmented)
    raw_pool = [i for i in order if i not in chosen]
    n_raw = max(0, min(settings.max_labeled_demos - len(augmented), len(raw_pool)))
    raw = item_rng(seed, *fill_rng_key).sample(raw_pool, n_raw)
    return tuple([Demo(train[i], traces[i]) for i in augmented] + [Demo(train[i]) for i in raw])


def build_candidates(user_id: str, train: Sequence[Example], traces: dict[int, str], settings: Settings,
                     seed: int, *, persona_only: bool) -> list[Candidate]:
    """The user's candidate demo sets in scan order (see the module docstring)."""
    limit = len(train) if settings.max_bootstrapped_demos == -1 else min(settings.max_bootstrapped_demos, len(train))
    cands: list[Candidate] = []
    if persona_only:
        cands.append(Candidate("persona-only", ()))
    cands.append(Candidate("labeled-only", tuple(labeled_sample(train, user_id, seed, settings.max_labeled_demos))))
    order = list(range(len(train)))
    cands.append(Candidate("unshuffled", _assemble(train, traces, order, limit, ("fill", user_id, -1),
                                                   settings, seed)))
    for k in range(settings.num_candidates):
        shuffled = list(order)
        item_rng(seed, "shuffle", user_id, k).shuffle(shuffled)
        size = item_rng(seed, "size", user_id, k).randint(1, max(limit, 1))
        cands.append(Candidate(f"shuffle-{k}", _assemble(train, traces, shuffled, size, ("fill", user_id, k),
                                                         settings, seed)))
    return cands


@dataclass
class SearchState:
    """One user's scan over their candidates."""

    user_id: str
    persona: str | None
    val: tuple[Example, ...]
    candidates: list[Candidate]
    stop_at_score: float
    index: int = 0
    best: Candidate | None = None
    best_score: float = -1.0
    scores: list[tuple[str, float]] = field(default_factory=list)
    stopped_early: bool = False

    @property
    def done(self) -> bool:
        return self.stopped_early or self.index >= len(self.candidates) or not self.val

    def requests(self) -> list[JudgeRequest]:
        cand = self.candidates[self.index]
        return [JudgeRequest(self.user_id, self.persona, cand.demos, ex) for ex in self.val]

    def record(self, answers: Sequence[str | None]) -> None:
        cand = self.candidates[self.index]
        correct = sum(1 for ex, a in zip(self.val, answers, strict=True) if a is not None and a == ex.gold)
        score = 100.0 * correct / len(self.val)
        self.scores.append((cand.name, score))
        if self.best is None or score > self.best_score:
            self.best, self.best_score = cand, score
        self.index += 1
        if score >= self.stop_at_score:
            self.stopped_early = True


def run_search(llm: Any, states: Sequence[SearchState], settings: Settings, stats: RunStats, *, seed: int,
               phase: str, progress: Callable[[int], Any] | None = None) -> None:
    """Advance every user's scan in lock-step rounds: one LLM batch (plus retries) per round."""
    while True:
        active = [s for s in states if not s.done]
        if not active:
            break
        requests: list[JudgeRequest] = []
        spans: list[tuple[SearchState, int, int]] = []
        for s in active:
            reqs = s.requests()
            spans.append((s, len(requests), len(requests) + len(reqs)))
            requests.extend(reqs)
        replies = run_judgments(llm, requests, settings, stats, seed=seed, phase=phase, progress=progress)
        for s, lo, hi in spans:
            s.record(replies[lo:hi])
    for s in states:
        stats.add(s.user_id, candidates_scored=len(s.scores))
        stats.note(s.user_id, **{f"{phase}_stopped_early": s.stopped_early})
        if s.best is None and s.candidates:  # no validation examples: keep the first candidate
            s.best = s.candidates[0]
