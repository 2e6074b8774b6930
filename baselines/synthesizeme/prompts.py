"""Every prompt text SynthesizeMe sends, and how examples are written into it.

All wording here is this project's own. The shape follows the method: a judge
that first speculates about the person (one to three hypotheses) and then
answers First or Second; a persona writer that reads a person's past judgments
and writes a short persona; and a persona-conditioned judge.

Answer format. The judge ends its reply with ``Preference: [[First]]`` or
``Preference: [[Second]]``; generation stops at the closing ``]]`` (a stop
string), so a reply can never run on past its answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from personalrewardbench.data.schema import Message
from personalrewardbench.judging import parse_choice, render_comparison
from personalrewardbench.missing import present_text

from .examples import Demo

ANSWER_STOP = "]]"
STOP_STRINGS: tuple[str, ...] = (ANSWER_STOP,)
PERSONA_STOP_STRINGS: tuple[str, ...] = ("\n### ",)

_REPLY_FORMAT = (
    "Reply in exactly this form and write nothing after the answer:\n"
    "Reasoning: <your guesses about the person and how they decide the choice>\n"
    "Preference: [[First]] or [[Second]]"
)

JUDGE_INSTRUCTION = (
    "Your job is to predict which of two assistant responses one particular person preferred. "
    "You get a conversation and two candidate replies to it, called First and Second. "
    "People differ: before deciding, make one to three short guesses about this person "
    "(their tastes, needs, background or values), using the conversation, the two replies and "
    "any earlier judgments of theirs shown before. A guess may be wrong; trying out possibilities "
    "is the point. Then pick the reply this person most likely preferred.\n\n" + _REPLY_FORMAT
)

PERSONA_JUDGE_INSTRUCTION = (
    "You act as a personal reward model for one person. Predict which of two assistant responses "
    "this person preferred. You get a conversation and two candidate replies to it, called First and "
    "Second. Here is what is known about the person:\n"
    "<persona>\n{persona}\n</persona>\n"
    "Think about what this person in particular would like, using the description above and any "
    "earlier judgments of theirs shown before; make one to three short guesses about how the persona "
    "applies here, then pick the reply they most likely preferred.\n\n" + _REPLY_FORMAT
)

# The persona writer's built-in instruction (``persona_program="builtin"``); the reference's
# optimized Theta is read at run time instead (program.py). Both get PERSONA_REPLY_FORMAT.
PERSONA_REPLY_FORMAT = (
    "Reply in this form:\n"
    "Reasoning: <what the choices have in common>\n"
    "Persona: <the persona, one short paragraph>"
)
DEFAULT_PERSONA_INSTRUCTION = (
    "Below are choices one person made between two assistant responses, each ending with the response "
    "they truly preferred; some come with reasoning about why. Describe this person as a concise persona "
    "that would let someone else predict their future choices: what they value in a response (for "
    "example length, tone, detail, directness, style, accuracy, creativity, caution), and anything "
    "the choices suggest about who they are. Do not list the examples one by one; generalise."
)

_PERSONA_RE = re.compile(r"persona\s*:\s*", re.IGNORECASE)


def judge_user_turn(context: Sequence[Message], first: str, second: str) -> str:
    """The user turn that asks for one judgment (shared rendering of the comparison)."""
    return render_comparison(context, first, second) + "\n\nWhich response did this person prefer?"


def demo_turns(demo: Demo) -> list[Message]:
    """A worked example as a user turn and the assistant's answer: reasoning (if any) and the true choice."""
    ex = demo.example
    reasoning = demo.reasoning if demo.reasoning is not None else "(no reasoning recorded for this example)"
    return [Message("user", judge_user_turn(ex.context, ex.first, ex.second)),
            Message("assistant", f"Reasoning: {reasoning}\nPreference: [[{ex.gold}]]")]


def judge_instruction(persona: str | None) -> str:
    if persona is None:
        return JUDGE_INSTRUCTION
    return PERSONA_JUDGE_INSTRUCTION.format(persona=present_text(persona) or "(nothing is known)")


def parse_answer(text: str) -> str | None:
    """'First', 'Second', or None when the reply names no single answer (shared parser)."""
    return parse_choice(text)


def parse_reasoning(text: str) -> str:
    """The reasoning part of a judge reply (text before the answer), without the leading label."""
    cut = re.split(r"preference\s*:", text, maxsplit=1, flags=re.IGNORECASE)[0]
    cut = re.sub(r"^\s*reasoning\s*:\s*", "", cut, flags=re.IGNORECASE)
    return cut.strip()


def persona_example_block(index: int, demo: Demo) -> str:
    """One past judgment for the persona writer, ending with the person's true preference."""
    ex = demo.example
    parts = [f"### Judgment {index}", render_comparison(ex.context, ex.first, ex.second)]
    if demo.reasoning:
        parts.append("Reasoning: " + demo.reasoning)
    parts.append(f"The person truly preferred: {ex.gold}")
    return "\n\n".join(parts)


def persona_system(instruction: str) -> str:
    """The writer's system message: its instruction (built-in, a program's, or a setting) and the reply form."""
    return instruction.strip() + "\n\n" + PERSONA_REPLY_FORMAT


def persona_user_turn(blocks: Sequence[str], n_dropped: int) -> str:
    head = "Past judgments of this person:\n\n"
    tail = ""
    if n_dropped:
        tail = f"\n\n({n_dropped} further judgment(s) left out to fit the context window.)"
    body = "\n\n".join(blocks) if blocks else "(no past judgments available)"
    return head + body + tail + "\n\nNow write the persona."


def worked_example_turns(judgments: str, reasoning: str | None, persona: str) -> list[Message]:
    """A persona program's worked example as a user turn (its past judgments) and the writer's answer."""
    answer = (f"Reasoning: {reasoning.strip()}\n" if reasoning and reasoning.strip() else "") + f"Persona: {persona.strip()}"
    return [Message("user", persona_user_turn([judgments.strip()], 0)), Message("assistant", answer)]


def parse_persona(text: str) -> str | None:
    """The persona in a writer reply: the text after the last 'Persona:' label. A reply without the
    label is used whole only when it is a bare description (it does not open with 'Reasoning:');
    reasoning text is never taken for a persona. None when there is no persona."""
    pieces = _PERSONA_RE.split(text)
    if len(pieces) >= 2:
        return pieces[-1].strip() or None
    if re.match(r"^\s*reasoning\s*:", text, flags=re.IGNORECASE):
        return None
    return text.strip() or None


def has_persona_label(text: str) -> bool:
    return len(_PERSONA_RE.split(text)) >= 2


def templates(persona_instruction: str, persona_examples: Sequence[str] = ()) -> dict[str, str]:
    """Every prompt template by name (the harness records their sha256 in provenance); a persona
    program's worked examples are included so that the hash changes with the program."""
    out = {
        "synthesizeme.judge": JUDGE_INSTRUCTION,
        "synthesizeme.persona_judge": PERSONA_JUDGE_INSTRUCTION,
        "synthesizeme.persona_writer": persona_system(persona_instruction),
    }
    for i, text in enumerate(persona_examples, 1):
        out[f"synthesizeme.persona_writer.example{i}"] = text
    return out
