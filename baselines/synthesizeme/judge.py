"""The judge: build one judgment's chat inside the context budget, and run many judgments at once.

Which demos a judge prompt shows: as the reference runs, only verified traces
(reasoning + answer); raw labeled demos are left out (DSPy drops a demo that
lacks the judge's output fields). With ``labeled_demos_in_prompts`` they are
shown with their answer and a "(no reasoning recorded)" placeholder.

Budget rule (the shared :func:`personalrewardbench.judging.fit_prompt`, recorded
per user). A chat is the instruction (with the persona, if any), the worked
examples as user/assistant turns, and the query; it must fit
``context_length - reserve - context_margin`` tokens, where ``reserve`` is
``max_judge_tokens`` but at most half the context (:func:`judging.reply_reserve`).
Worked examples are dropped whole, the last in the demo list first; then the
query conversation's oldest turns; then the start of its earliest kept turn.
The two responses are never cut.

Generation stops at the answer (stop string ``]]``) or at ``max_judge_tokens``;
an unparseable reply is a failed judgment (with the default identical retries no
second request is sent, as the reference's cached retries; see
:func:`personalrewardbench.judging.generate_parsed`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from personalrewardbench.data.schema import Context, Message
from personalrewardbench.judging import FittedPrompt, Parsed, fit_prompt, generate_parsed, reply_reserve
from personalrewardbench.llm.base import GenerationParams

from . import prompts
from .examples import Demo, Example
from .settings import Settings
from .stats import RunStats


@dataclass(frozen=True)
class JudgeRequest:
    user_id: str
    persona: str | None  # None: the plain judge; a string: the persona-conditioned judge
    demos: tuple[Demo, ...]
    example: Example


def prompt_demos(demos: Sequence[Demo], settings: Settings) -> tuple[Demo, ...]:
    """The demos a judge prompt shows: verified traces only, unless ``labeled_demos_in_prompts``."""
    if settings.labeled_demos_in_prompts:
        return tuple(demos)
    return tuple(d for d in demos if d.reasoning is not None)


def fit_judge_chat(llm: Any, req: JudgeRequest, settings: Settings) -> FittedPrompt:
    """The request's chat, shrunk by the stated rule until it fits the model's context."""
    system = Message("system", prompts.judge_instruction(req.persona))
    ex = req.example

    def build(demos: Sequence[Demo], context: Context) -> list[Message]:
        msgs = [system]
        for d in demos:
            msgs.extend(prompts.demo_turns(d))
        msgs.append(Message("user", prompts.judge_user_turn(context, ex.first, ex.second)))
        return msgs

    return fit_prompt(llm, build, ex.context, prompt_demos(req.demos, settings),
                      reserve_tokens=reply_reserve(llm, settings.max_judge_tokens, settings.context_margin))


def generate_counted(llm: Any, chats: Sequence[Sequence[Message]], parse: Callable[[str], Any], settings: Settings,
                     stats: RunStats, *, max_tokens: int, stop: tuple[str, ...], seed: int, phase: str) -> list[Parsed]:
    """Shared generate-parse-retry over all chats; counts this phase's LLM batches, requests and tokens."""
    if not chats:
        return []
    params = GenerationParams(max_tokens=max_tokens, temperature=settings.temperature, stop=stop, seed=seed)
    before = stats.usage_snapshot(llm)
    out = generate_parsed(llm, chats, params, parse, tries=settings.max_tries,
                          retry_temperature=settings.retry_temperature)
    stats.record_phase(phase, llm, before, batches=max(p.tries for p in out),  # one generate call per try round
                       judgments=len(chats), capped=sum(p.finish_reason == "length" for p in out))
    return out


def run_judgments(
    llm: Any,
    requests: Sequence[JudgeRequest],
    settings: Settings,
    stats: RunStats,
    *,
    seed: int,
    phase: str,
    failed_counter: str = "failed_fit_judgments",
) -> list[str | None]:
    """Judge every request in one batch (plus retry batches): 'First', 'Second' or None (failed)."""
    return [p.value for p in run_judgments_full(llm, requests, settings, stats, seed=seed, phase=phase,
                                                failed_counter=failed_counter)]


def run_judgments_full(llm: Any, requests: Sequence[JudgeRequest], settings: Settings, stats: RunStats, *,
                       seed: int, phase: str, failed_counter: str = "failed_fit_judgments") -> list[Parsed]:
    """As :func:`run_judgments`, keeping the reply texts (bootstrapping needs the reasoning)."""
    fitted = [fit_judge_chat(llm, r, settings) for r in requests]
    for r, f in zip(requests, fitted, strict=True):
        stats.add_fit(r.user_id, f)
    replies = generate_counted(llm, [f.chat for f in fitted], prompts.parse_answer, settings, stats,
                               max_tokens=settings.max_judge_tokens, stop=prompts.STOP_STRINGS, seed=seed,
                               phase=phase)
    for r, rep in zip(requests, replies, strict=True):
        stats.add(r.user_id, retries=rep.tries - 1, judge_replies_capped=int(rep.finish_reason == "length"),
                  **{failed_counter: int(rep.value is None)})
    return replies
