"""Step 3: persona induction.

Each user's past judgments (by default the demo set chosen by the first
search, as the reference does; or all verified traces), each ending with the
user's true preference, go to the persona writer, whose instruction (Theta) is
a setting. Budget rule: past judgments are dropped whole, the last one first,
until the prompt fits ``context_length - max_persona_tokens - context_margin``;
how many were dropped is recorded per user and said in the prompt. All users'
writer prompts go to the LLM in one batch (plus retry batches). A reply without
the 'Persona:' label (cut off by ``max_persona_tokens``, or a bare description)
is used whole and counted (``personas_unlabeled``); an empty reply after all
tries leaves the persona empty and is counted (``failed_personas``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from personalrewardbench.data.schema import Context, Message
from personalrewardbench.judging import FittedPrompt, fit_prompt

from . import prompts
from .examples import Demo
from .judge import generate_counted
from .settings import Settings
from .stats import RunStats


@dataclass(frozen=True)
class PersonaJob:
    user_id: str
    demos: tuple[Demo, ...]


def persona_chat(llm: Any, demos: Sequence[Demo], settings: Settings) -> FittedPrompt:
    """The writer's chat for these past judgments, dropping whole ones (last first) to fit."""
    system = Message("system", settings.persona_instruction or prompts.DEFAULT_PERSONA_INSTRUCTION)
    blocks = [prompts.persona_example_block(i + 1, d) for i, d in enumerate(demos)]

    def build(kept: Sequence[str], _context: Context) -> list[Message]:
        return [system, Message("user", prompts.persona_user_turn(kept, len(blocks) - len(kept)))]

    return fit_prompt(llm, build, (), blocks, reserve_tokens=settings.max_persona_tokens + settings.context_margin)


def write_personas(llm: Any, jobs: Sequence[PersonaJob], settings: Settings, stats: RunStats, *, seed: int,
                   progress: Callable[[int], Any] | None = None) -> dict[str, str]:
    """user_id -> persona text ('' when the writer gave none after all tries)."""
    chats = []
    for job in jobs:
        fitted = persona_chat(llm, job.demos, settings)
        stats.add(job.user_id, persona_examples_dropped=fitted.items_dropped)
        chats.append(fitted.chat)
    replies = generate_counted(llm, chats, prompts.parse_persona, settings, stats,
                               max_tokens=settings.max_persona_tokens, stop=prompts.PERSONA_STOP_STRINGS,
                               seed=seed, phase="persona", progress=progress)
    out = {}
    for job, rep in zip(jobs, replies, strict=True):
        stats.add(job.user_id, retries=rep.tries - 1, failed_personas=int(rep.value is None),
                  personas_unlabeled=int(rep.value is not None and not prompts.has_persona_label(rep.text)))
        out[job.user_id] = rep.value or ""
    return out
