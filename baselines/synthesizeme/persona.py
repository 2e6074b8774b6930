"""Step 3: persona induction.

Each user's past judgments (by default the demo set chosen by the first search,
as the reference does, raw labeled demos included; or all verified traces), each
ending with the user's true preference, go to the persona writer. The writer is
a program: an instruction and worked examples (the reference's Theta, read at run
time from the installed ``synthesizeme`` package, or any DSPy program file; see
program.py), or this project's zero-shot instruction (``persona_program="builtin"``).
The chat is: system = instruction + reply form; each worked example as a user turn
(its past judgments) and an assistant turn (reasoning, persona); then the user's
past judgments.

Budget rule: the chat must fit ``context_length - reserve - context_margin``
(``reserve`` = ``max_persona_tokens``, at most half the context). The program's
worked examples go first, the last one first; then the user's past judgments,
the last one first (the prompt says how many were left out). Both counts are
recorded per user (``persona_program_examples_dropped``,
``persona_examples_dropped``). All users' writer prompts go to the LLM in one batch.

Reading the reply: the persona is the text after the 'Persona:' label. A reply
without it that is a bare description is used whole (``personas_unlabeled``); a
reply that is only reasoning, or one cut by ``max_persona_tokens`` before its
label, gives no persona (``failed_personas``; ``personas_capped``): reasoning is
never taken for a persona. Every persona is checked by :func:`stats.persona_flags`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from personalrewardbench.data.schema import Context, Message
from personalrewardbench.judging import FittedPrompt, fit_prompt, reply_reserve

from . import prompts
from .examples import Demo
from .judge import generate_counted
from .program import PersonaProgram, WorkedExample
from .settings import Settings
from .stats import RunStats, persona_flags


@dataclass(frozen=True)
class PersonaJob:
    user_id: str
    demos: tuple[Demo, ...]


@dataclass(frozen=True)
class PersonaPrompt:
    fitted: FittedPrompt
    judgments_dropped: int
    program_examples_dropped: int
    program_examples_shown: int
    judgments_shown: int


def writer_instruction(settings: Settings, program: PersonaProgram | None) -> str:
    if settings.persona_instruction:
        return settings.persona_instruction
    return program.instruction if program is not None else prompts.DEFAULT_PERSONA_INSTRUCTION


def persona_chat(llm: Any, demos: Sequence[Demo], settings: Settings,
                 program: PersonaProgram | None = None) -> PersonaPrompt:
    """The writer's chat for these past judgments, fitted to the context by the rule above."""
    system = Message("system", prompts.persona_system(writer_instruction(settings, program)))
    blocks = [prompts.persona_example_block(i + 1, d) for i, d in enumerate(demos)]
    examples = list(program.examples) if program is not None else []
    # fit_prompt drops items whole from the end: past judgments first in the list, worked examples after.
    items: list[str | WorkedExample] = [*blocks, *examples]

    def build(kept: Sequence[str | WorkedExample], _context: Context) -> list[Message]:
        kept_blocks = [x for x in kept if isinstance(x, str)]
        msgs = [system]
        for ex in kept:
            if isinstance(ex, WorkedExample):
                msgs.extend(prompts.worked_example_turns(ex.judgments, ex.reasoning, ex.persona))
        msgs.append(Message("user", prompts.persona_user_turn(kept_blocks, len(blocks) - len(kept_blocks))))
        return msgs

    fitted = fit_prompt(llm, build, (), items,
                        reserve_tokens=reply_reserve(llm, settings.max_persona_tokens, settings.context_margin))
    shown_examples = max(0, fitted.items_kept - len(blocks))
    shown_blocks = min(fitted.items_kept, len(blocks))
    return PersonaPrompt(fitted, len(blocks) - shown_blocks, len(examples) - shown_examples, shown_examples,
                         shown_blocks)


def write_personas(llm: Any, jobs: Sequence[PersonaJob], settings: Settings, stats: RunStats, *, seed: int,
                   program: PersonaProgram | None = None) -> dict[str, str]:
    """user_id -> persona text ('' when the writer gave none)."""
    chats = []
    for job in jobs:
        p = persona_chat(llm, job.demos, settings, program)
        stats.add(job.user_id, persona_examples_dropped=p.judgments_dropped,
                  persona_program_examples_dropped=p.program_examples_dropped)
        stats.note(job.user_id, persona_prompt={"past_judgments": p.judgments_shown,
                                                "worked_examples": p.program_examples_shown})
        chats.append(p.fitted.chat)
    replies = generate_counted(llm, chats, prompts.parse_persona, settings, stats,
                               max_tokens=settings.max_persona_tokens, stop=prompts.PERSONA_STOP_STRINGS,
                               seed=seed, phase="persona")
    out = {}
    for job, rep in zip(jobs, replies, strict=True):
        capped = rep.finish_reason == "length"
        labeled = prompts.has_persona_label(rep.text)
        persona = rep.value or ""
        if capped and not labeled:
            persona = ""  # cut before its label: what is there is reasoning, not a persona
        flags = persona_flags(persona, capped=capped)
        stats.add(job.user_id, retries=rep.tries - 1, failed_personas=int(not persona),
                  personas_unlabeled=int(bool(persona) and not labeled), personas_capped=int(capped),
                  personas_flagged=int(bool(flags)), **{f"persona_{f}": 1 for f in flags})
        stats.note(job.user_id, persona_flags=flags)
        out[job.user_id] = persona
    return out
