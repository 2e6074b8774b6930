"""The fit pipeline for a group of users, every phase batched across the group.

Phases: bootstrap (plain judge) -> search 1 (plain judge; skipped when personas are
written from all verified traces, as nothing uses its choice then) -> persona writing ->
[re-bootstrap with the persona judge] -> search 2 (persona judge, persona-only
candidate first) -> final prompt. Which phases run depends on the ablation:
- personas + demos: all phases; final = persona + demos chosen by search 2;
- just personas: up to persona writing; final = persona, no demos;
- just demos: bootstrap and search 1; final = plain judge + demos chosen by search 1.
Batched mode passes all users as one group; the loop mode passes one user at a
time, issuing exactly the same requests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .bootstrap import BootstrapJob, bootstrap_traces
from .examples import Demo, UserSplit
from .persona import PersonaJob, write_personas
from .program import PersonaProgram
from .search import SearchState, build_candidates, run_search
from .settings import Settings
from .stats import RunStats


@dataclass(frozen=True)
class UserModel:
    """A user's final judge prompt: persona (None for just-demos) and few-shot demos."""

    persona: str | None
    demos: tuple[Demo, ...]
    candidate: str
    val_score: float | None
    search_scores: tuple[tuple[str, float], ...] = ()


def _search(llm: Any, splits: Mapping[str, UserSplit], traces: Mapping[str, dict[int, str]],
            personas: Mapping[str, str] | None, settings: Settings, stats: RunStats, seed: int,
            phase: str) -> dict[str, SearchState]:
    states = {}
    for uid, sp in splits.items():
        persona = personas[uid] if personas is not None else None
        cands = build_candidates(uid, sp.train, traces[uid], settings, seed, persona_only=personas is not None)
        states[uid] = SearchState(uid, persona, sp.val, cands, settings.stop_at_score, settings.score_every_candidate)
    run_search(llm, list(states.values()), settings, stats, seed=seed, phase=phase)
    return states


def fit_group(llm: Any, splits: Mapping[str, UserSplit], settings: Settings, stats: RunStats, *, seed: int,
              program: PersonaProgram | None = None) -> dict[str, UserModel]:
    """Fit every user in ``splits`` together; returns user_id -> final prompt parts.

    ``program``: the persona writer's program (None: the built-in instruction).
    """
    if not splits:
        return {}
    jobs = [BootstrapJob(uid, sp.train, None) for uid, sp in splits.items()]
    traces = bootstrap_traces(llm, jobs, settings, stats, seed=seed, phase="bootstrap")
    # Search 1 picks the just-demos prompt and, by default, the persona writer's input; with personas
    # written from all verified traces its choice is never used, so it is not run.
    needs_first = not settings.use_persona or settings.persona_source == "selected"
    first = _search(llm, splits, traces, None, settings, stats, seed, "search1") if needs_first else {}

    def chosen(states: Mapping[str, SearchState], uid: str) -> tuple[Demo, ...]:
        best = states[uid].best
        return best.demos if best is not None else ()

    if not settings.use_persona:
        return {uid: UserModel(None, chosen(first, uid), first[uid].best.name, first[uid].best_score,
                               tuple(first[uid].scores)) for uid in splits}

    persona_jobs = []
    for uid, sp in splits.items():
        if settings.persona_source == "verified":
            demos = tuple(Demo(sp.train[i], r) for i, r in sorted(traces[uid].items()))
        else:
            demos = chosen(first, uid)
        persona_jobs.append(PersonaJob(uid, demos or tuple(Demo(e) for e in sp.train)))
    personas = write_personas(llm, persona_jobs, settings, stats, seed=seed, program=program)

    if not settings.use_demos:
        return {uid: UserModel(personas[uid], (), "persona-only", None) for uid in splits}

    if settings.rebootstrap_with_persona:
        jobs = [BootstrapJob(uid, sp.train, personas[uid]) for uid, sp in splits.items()]
        traces = bootstrap_traces(llm, jobs, settings, stats, seed=seed, phase="bootstrap2")
    second = _search(llm, splits, traces, personas, settings, stats, seed, "search2")
    return {uid: UserModel(personas[uid], chosen(second, uid), second[uid].best.name, second[uid].best_score,
                           tuple(second[uid].scores)) for uid in splits}
