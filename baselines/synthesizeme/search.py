"""Steps 2 and 4: candidate demo sets and their selection on validation pairs.

Candidates, in scan order (DSPy's bootstrap few-shot with random search, as the reference patches it):
- ``persona-only`` (step 4 only): no demos, the persona alone;
- ``labeled-only``: up to ``max_labeled_demos`` raw labeled pairs, no reasoning (as the reference runs,
  its judge prompt shows none of them: it is the zero-shot judge);
- ``unshuffled``: the verified traces in train order (up to ``max_bootstrapped_demos``),
  filled with raw labeled pairs up to ``max_labeled_demos`` demos;
- ``shuffle-k`` (k < ``num_candidates``): the train set in a shuffled order and a random
  size (1..limit); the first ``size`` verified traces in that order, filled the same way.
With ``candidate_rng="reference"`` the draws are the reference's: candidate k shuffles with
``random.Random(k)`` and draws its size with a fresh ``random.Random(k).randint(1, limit)``; the
fill shuffles the unused examples with ``random.Random(0)`` and samples them with another
``random.Random(0)`` (the same for every user and run seed). ``"seeded"`` seeds each draw by
(run seed, user, candidate).

Each candidate is scored on the user's validation examples: percent accuracy, a
failed judgment counting wrong. Scanning in order, the best is replaced only by a
strictly higher score (ties keep the earlier candidate); the scan stops at the first
candidate scoring at least ``stop_at_score``. The reference scores every candidate and
then scans (``score_every_candidate``, the default); otherwise a user whose scan has
stopped sends nothing more (the same choice, fewer calls).

Users are per-user state machines. When every candidate is scored (the
default), all users' candidates go to the LLM in one batch (the same requests,
recorded in scan order); otherwise they advance in lock-step rounds: in each
round every user still scoring submits its next candidate, and all their
judgments go to the LLM together.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .bootstrap import labeled_sample
from .examples import Demo, Example, item_rng
from .judge import JudgeRequest, run_judgments_full
from .settings import Settings
from .stats import RunStats


@dataclass(frozen=True)
class Candidate:
    name: str
    demos: tuple[Demo, ...]


def _fill(pool: list[int], n: int, key: tuple, settings: Settings, seed: int) -> list[int]:
    if settings.candidate_rng == "reference":
        pool = list(pool)
        random.Random(0).shuffle(pool)
        return random.Random(0).sample(pool, n)
    return item_rng(seed, *key).sample(pool, n)


def _assemble(train: Sequence[Example], traces: dict[int, str], order: Sequence[int], size: int,
              fill_key: tuple, settings: Settings, seed: int) -> tuple[Demo, ...]:
    augmented = [i for i in order if i in traces][:size]
    chosen = set(augmented)
    raw_pool = [i for i in order if i not in chosen]
    n_raw = max(0, min(settings.max_labeled_demos - len(augmented), len(raw_pool)))
    raw = _fill(raw_pool, n_raw, fill_key, settings, seed)
    return tuple([Demo(train[i], traces[i]) for i in augmented] + [Demo(train[i]) for i in raw])


def _shuffle(n: int, limit: int, user_id: str, k: int, settings: Settings, seed: int) -> tuple[list[int], int]:
    order = list(range(n))
    if settings.candidate_rng == "reference":
        random.Random(k).shuffle(order)
        return order, random.Random(k).randint(1, max(limit, 1))
    item_rng(seed, "shuffle", user_id, k).shuffle(order)
    return order, item_rng(seed, "size", user_id, k).randint(1, max(limit, 1))


def build_candidates(user_id: str, train: Sequence[Example], traces: dict[int, str], settings: Settings,
                     seed: int, *, persona_only: bool) -> list[Candidate]:
    """The user's candidate demo sets in scan order (see the module docstring)."""
    limit = len(train) if settings.max_bootstrapped_demos == -1 else min(settings.max_bootstrapped_demos, len(train))
    cands: list[Candidate] = []
    if persona_only:
        cands.append(Candidate("persona-only", ()))
    cands.append(Candidate("labeled-only", tuple(labeled_sample(train, user_id, seed, settings.max_labeled_demos,
                                                                settings.candidate_rng))))
    cands.append(Candidate("unshuffled", _assemble(train, traces, list(range(len(train))), limit,
                                                   ("fill", user_id, -1), settings, seed)))
    for k in range(settings.num_candidates):
        order, size = _shuffle(len(train), limit, user_id, k, settings, seed)
        cands.append(Candidate(f"shuffle-{k}", _assemble(train, traces, order, size, ("fill", user_id, k),
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
    score_every_candidate: bool = True
    index: int = 0
    best: Candidate | None = None
    best_score: float = -1.0
    scores: list[tuple[str, float]] = field(default_factory=list)
    calls: list[tuple[str, int, int]] = field(default_factory=list)  # (candidate, judgments, requests sent)
    stopped_early: bool = False  # a candidate reached stop_at_score: later ones cannot be chosen

    @property
    def done(self) -> bool:
        if self.index >= len(self.candidates) or not self.val:
            return True
        return self.stopped_early and not self.score_every_candidate

    def record(self, answers: Sequence[str | None], sent: int | None = None) -> None:
        """Score the current candidate from its validation answers (None = failed, scored wrong);
        ``sent``: requests that reached the model for it (the rest came from the cache)."""
        cand = self.candidates[self.index]
        self.calls.append((cand.name, len(answers), len(answers) if sent is None else sent))
        correct = sum(1 for ex, a in zip(self.val, answers, strict=True) if a is not None and a == ex.gold)
        score = 100.0 * correct / len(self.val)
        self.scores.append((cand.name, score))
        self.index += 1
        if self.stopped_early:  # scored for the reference's cost, after its scan has stopped
            return
        if self.best is None or score > self.best_score:
            self.best, self.best_score = cand, score
        if score >= self.stop_at_score:
            self.stopped_early = True


def run_search(llm: Any, states: Sequence[SearchState], settings: Settings, stats: RunStats, *, seed: int,
               phase: str) -> None:
    """Score every user's candidates: all of them in one LLM batch when every candidate is scored
    (``score_every_candidate``, the reference's way), else in lock-step rounds, one batch per round.

    Both ways send the same requests and make the same choice: a scan in order over the same
    scores. In the one batch, requests are listed user by user in scan order, so a request that
    repeats an earlier candidate's is answered by that one (counted as not sent, as a cache hit
    in rounds is).
    """
    while True:
        active = [s for s in states if not s.done]
        if not active:
            break
        requests: list[JudgeRequest] = []
        spans: list[tuple[SearchState, int, int]] = []
        for s in active:
            last = len(s.candidates) if settings.score_every_candidate else s.index + 1
            for cand in s.candidates[s.index:last]:
                spans.append((s, len(requests), len(requests) + len(s.val)))
                requests.extend(JudgeRequest(s.user_id, s.persona, cand.demos, ex) for ex in s.val)
        replies = run_judgments_full(llm, requests, settings, stats, seed=seed, phase=phase)
        for s, lo, hi in spans:  # in scan order per user
            s.record([r.value for r in replies[lo:hi]], sent=sum(r.sent for r in replies[lo:hi]))
    for s in states:
        stats.add(s.user_id, candidates_scored=len(s.scores))
        stats.note(s.user_id, **{f"{phase}_stopped_early": s.stopped_early,
                                 f"{phase}_judgments_per_candidate": len(s.val),
                                 f"{phase}_candidates": [[name, score, n, sent] for (name, score), (_, n, sent)
                                                         in zip(s.scores, s.calls, strict=True)]})
        if s.best is None and s.candidates:  # no validation examples: keep the first candidate
            s.best = s.candidates[0]
