"""The base class of the pairwise LLM-judge baselines (default judge, memory, demographics).

A subclass supplies its wordings (a system instruction and request templates,
per ``wording``) and, per user, an optional list of context items (history, a
profile) that go before the comparison. This class does the rest the same way
for all of them: fit each prompt into the context budget
(:func:`judging.fit_prompt`), batch every query of every user into one LLM call
per phase, turn the answer into P(first), and count per user what was dropped,
truncated, capped or failed.

Defaults = the SynthesizeMe reference's default judge as it runs
(``synthesizeme.DefaultJudge``: DSPy chain of thought asking which completion
"the human judge" is more likely to prefer, with one to three speculations about
the judge; the answer parsed; a tie when it cannot be read; replies up to 8,192
tokens at temperature 0; 4 identical, cached tries): ``variant="cot"``,
``answer="parse"``, ``wording="human-judge"``, ``max_reasoning_tokens=8192``,
``retry_temperature=None``.

Settings:

- ``variant="direct"``: one ``choice_logprobs`` call; P(first) = softmax over the
  log-probs of "First" and "Second" (this project's judge).
- ``variant="cot"``: the judge first reasons (at most ``max_reasoning_tokens``
  tokens); then its generated answer is parsed (``answer="parse"``: P is 1 or 0;
  an unparseable answer is a failed judgment, scored wrong like the reference's
  tie; ``retry_temperature`` set re-samples up to ``tries`` times first), or
  generation stops at "Answer:" and the answer is scored with choice log-probs
  in a follow-up turn (``answer="logprobs"``).
- ``wording``: "human-judge" (the reference's question) or "plain" (this
  project's earlier wording: which reply is better overall / would this person prefer).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from personalrewardbench.data.schema import Message, Query, UserHistory
from personalrewardbench.judging import (
    TEMPLATES,
    FittedPrompt,
    JudgeStats,
    choice_to_p,
    fit_prompt,
    generate_parsed,
    judge_chat,
    parse_choice,
    reply_reserve,
    score_choices,
)
from personalrewardbench.llm.base import LLM, GenerationParams
from personalrewardbench.methods import Method, MethodError

VARIANTS = ("direct", "cot")
ANSWER_MODES = ("logprobs", "parse")
WORDINGS = ("human-judge", "plain")
CHOICE_RESERVE = 16  # tokens kept free after a direct prompt (the scored answer)
FOLLOWUP_RESERVE = 96  # tokens kept free for the CoT follow-up turn and its answer
PARSE_MARGIN = 8  # tokens kept free besides the reasoning cap when the answer is parsed

# The reference judge's question, in this project's words (requests shared by the judges).
HUMAN_JUDGE_REQUESTS: dict[str, str] = {
    "direct_request": "Which of the two responses is the human judge more likely to prefer? "
                      "Reply with one word: First or Second.",
    "cot_request": (
        "Which of the two responses is the human judge more likely to prefer? Reason first: put forward one "
        "to three guesses about the judge's preferences or persona (a guess may be wrong; exploring "
        "possibilities is the point), drawing on what is shown. Then end with a line that reads exactly "
        "'Answer: First' or 'Answer: Second'."
    ),
    "cot_followup": "Given your reasoning, which response is the human judge more likely to prefer? "
                    "Reply with one word: First or Second.",
}


class LLMJudgeMethod(Method):
    """A pairwise LLM judge; subclasses add per-user context through :meth:`context_items`.

    ``wordings`` maps each wording to its ``system`` instruction and any request
    templates that replace :data:`judging.TEMPLATES` entries.
    """

    capabilities: ClassVar[frozenset[str]] = frozenset({"llm", "pairwise"})
    wordings: ClassVar[Mapping[str, Mapping[str, str]]] = {"human-judge": {"system": ""}, "plain": {"system": ""}}
    min_items: ClassVar[int] = 0  # context items never dropped (conversation is cut first)

    def __init__(self, variant: str = "cot", max_reasoning_tokens: int = 8192, answer: str = "parse",
                 tries: int = 4, retry_temperature: float | None = None, wording: str = "human-judge") -> None:
        if variant not in VARIANTS:
            raise MethodError(f"{self.name}: unknown variant {variant!r}; use one of {', '.join(VARIANTS)}")
        if answer not in ANSWER_MODES:
            raise MethodError(f"{self.name}: unknown answer mode {answer!r}; use one of {', '.join(ANSWER_MODES)}")
        if wording not in WORDINGS:
            raise MethodError(f"{self.name}: unknown wording {wording!r}; use one of {', '.join(WORDINGS)}")
        if int(max_reasoning_tokens) < 1 or int(tries) < 1:
            raise MethodError(f"{self.name}: max_reasoning_tokens and tries must be >= 1 "
                              f"(got {max_reasoning_tokens}, {tries})")
        if retry_temperature is not None and float(retry_temperature) < 0:
            raise MethodError(f"{self.name}: retry_temperature must be >= 0, or unset for identical retries")
        self.variant = variant
        self.max_reasoning_tokens = int(max_reasoning_tokens)
        self.answer = answer
        self.tries = int(tries)
        self.retry_temperature = None if retry_temperature is None else float(retry_temperature)
        self.wording = wording
        self.stats = JudgeStats()

    @property
    def system_prompt(self) -> str:
        return self.wordings[self.wording]["system"]

    @property
    def template_overrides(self) -> dict[str, str]:
        return {k: v for k, v in self.wordings[self.wording].items() if k != "system"}

    # ------------------------------------------------------------------ hooks for subclasses

    def fit_user(self, history: UserHistory) -> None:  # noqa: B027 - default: nothing per user
        """Remember what this judge needs about one user (history items, profile)."""

    def context_items(self, user_id: str) -> Sequence[str]:
        """Rendered per-user items, most important first (dropped whole from the end to fit)."""
        return ()

    def render_preamble(self, items: Sequence[str]) -> str:
        """The text that goes before the comparison, built from the kept items."""
        return "\n\n".join(items)

    # ------------------------------------------------------------------ the contract

    @property
    def prompt_templates(self) -> dict[str, str]:
        """Every wording this judge sends (hashed into results provenance)."""
        return {"system": self.system_prompt, **TEMPLATES, **self.template_overrides}

    def setup(self, env: Any) -> None:
        super().setup(env)
        if getattr(env, "llm", None) is None:
            raise MethodError(f"{self.name} needs an LLM: run it with --backend/--model (or the default backend)")

    def fit(self, histories: Sequence[UserHistory]) -> None:
        self.stats = JudgeStats()
        for h in histories:
            self.fit_user(h)

    def predict(self, queries: Sequence[Query]) -> list[float | None]:
        llm = self._llm()
        fitted = [self._fit_query(llm, q) for q in queries]
        for q, f in zip(queries, fitted, strict=True):
            self.stats.add_fit(q.user_id, f)
        chats = [f.chat for f in fitted]
        if self.variant == "direct":
            probs = score_choices(llm, chats)
        else:
            probs = self._predict_cot(llm, queries, chats)
        for q, p in zip(queries, probs, strict=True):
            self.stats.add(q.user_id, judgments=1, failed_judgments=int(p is None))
        return probs

    def usage(self) -> Mapping[str, Any]:
        """Per-user and total counters, plus the template hashes (readable through a sandbox proxy)."""
        hashes = {k: hashlib.sha256(v.encode("utf-8")).hexdigest() for k, v in sorted(self.prompt_templates.items())}
        return {**self.stats.as_usage(), "prompt_template_hashes": hashes}

    # ------------------------------------------------------------------ internals

    def _llm(self) -> LLM:
        llm = getattr(getattr(self, "env", None), "llm", None)
        if llm is None:
            raise MethodError(f"{self.name}: setup(env) with an LLM must be called before predict")
        return llm

    def _template(self, key: str) -> str:
        return self.template_overrides.get(key, TEMPLATES[key])

    def _fit_query(self, llm: LLM, q: Query) -> FittedPrompt:
        request = self._template("direct_request" if self.variant == "direct" else "cot_request")
        if self.variant == "direct":
            reserve = CHOICE_RESERVE
        else:
            reserve = reply_reserve(llm, self.max_reasoning_tokens,
                                    PARSE_MARGIN if self.answer == "parse" else FOLLOWUP_RESERVE)

        def build(items: Sequence[str], context: Sequence[Message]) -> list[Message]:
            return judge_chat(self.system_prompt, context, q.first, q.second,
                              preamble=self.render_preamble(items) if items else "", request=request)

        return fit_prompt(llm, build, q.context, self.context_items(q.user_id), reserve_tokens=reserve,
                          min_items=self.min_items)

    def _predict_cot(self, llm: LLM, queries: Sequence[Query], chats: list[list[Message]]) -> list[float | None]:
        seed = int(getattr(self.env, "seed", 0))
        if self.answer == "parse":
            params = GenerationParams(max_tokens=self.max_reasoning_tokens, temperature=0.0, seed=seed)
            outcomes = generate_parsed(llm, chats, params, parse_choice, tries=self.tries,
                                       retry_temperature=self.retry_temperature)
            for q, o in zip(queries, outcomes, strict=True):
                self.stats.add(q.user_id, retries=o.tries - 1, reasoning_capped=int(o.finish_reason == "length"))
            return [choice_to_p(o.value) for o in outcomes]
        params = GenerationParams(max_tokens=self.max_reasoning_tokens, temperature=0.0, seed=seed,
                                  stop=("Answer:",))
        completions = llm.generate(chats, params)
        followups = []
        for q, chat, comp in zip(queries, chats, completions, strict=True):
            self.stats.add(q.user_id, reasoning_capped=int(comp.finish_reason == "length"))
            reasoning = comp.text.strip() or "(no reasoning given)"
            followups.append([*chat, Message("assistant", reasoning), Message("user", self._template("cot_followup"))])
        return score_choices(llm, followups)
