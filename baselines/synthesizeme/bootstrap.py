"""Step 1: bootstrap verified reasoning.

For every train example of every user, a judge speculates about the person
and answers; the reasoning is kept only when the answer equals the user's real
choice. As the reference runs, the judge (its "teacher") is zero-shot: the
reference primes it with up to ``max_labeled_demos`` raw labeled examples, but
DSPy drops them from the prompt. With ``labeled_demos_in_prompts`` they are
shown (never the example being explained). The reference re-runs this inside
every candidate; with its cache those repeats are the same requests, so here it
runs once per phase. All users' examples go to the LLM in one batch.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import prompts
from .examples import Demo, Example, item_rng
from .judge import JudgeRequest, run_judgments_full
from .settings import Settings
from .stats import RunStats


@dataclass(frozen=True)
class BootstrapJob:
    user_id: str
    train: tuple[Example, ...]
    persona: str | None  # None: plain judge (step 1); a persona: re-verification before step 4


def labeled_sample(train: Sequence[Example], user_id: str, seed: int, k: int, rng: str = "reference") -> list[Demo]:
    """Up to ``k`` raw labeled demos sampled from the user's train examples (in sample order).

    ``rng="reference"``: ``random.Random(0).sample`` over the train list, the draw
    DSPy's ``LabeledFewShot`` makes (the same picks for the same train size);
    ``"seeded"``: a sample seeded by (run seed, user id).
    """
    k = min(k, len(train))
    sampler = random.Random(0) if rng == "reference" else item_rng(seed, "labeled", user_id)
    picked = sampler.sample(range(len(train)), k)
    return [Demo(train[i]) for i in picked]


def bootstrap_traces(
    llm: Any,
    jobs: Sequence[BootstrapJob],
    settings: Settings,
    stats: RunStats,
    *,
    seed: int,
    phase: str,
) -> dict[str, dict[int, str]]:
    """user_id -> {train index: reasoning} for the traces whose answer matched the user's choice."""
    requests: list[JudgeRequest] = []
    owners: list[tuple[str, int]] = []
    for job in jobs:
        teacher = (labeled_sample(job.train, job.user_id, seed, settings.max_labeled_demos, settings.candidate_rng)
                   if settings.labeled_demos_in_prompts else [])
        for i, ex in enumerate(job.train):
            demos = tuple(d for d in teacher if d.example.key != ex.key)
            requests.append(JudgeRequest(job.user_id, job.persona, demos, ex))
            owners.append((job.user_id, i))
    replies = run_judgments_full(llm, requests, settings, stats, seed=seed, phase=phase)
    out: dict[str, dict[int, str]] = {job.user_id: {} for job in jobs}
    for (uid, i), req, rep in zip(owners, requests, replies, strict=True):
        verified = rep.value is not None and rep.value == req.example.gold
        if verified:
            out[uid][i] = prompts.parse_reasoning(rep.text)
        stats.add(uid, bootstrap_attempts=1, verified_traces=int(verified))
    return out
