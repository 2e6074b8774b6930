"""A minimal LLM method for CLI tests: P(first) from one ``choice_logprobs`` call per query."""

from __future__ import annotations

import math
from collections.abc import Sequence

from personalrewardbench.data.schema import Message
from personalrewardbench.methods import Method


class ChoiceJudge(Method):
    name = "choice-judge"
    capabilities = frozenset({"llm"})

    def predict(self, queries: Sequence) -> list[float | None]:
        chats = [[Message("user", f"{q.first}\n---\n{q.second}\nFirst or Second?")] for q in queries]
        out: list[float | None] = []
        for lp in self.env.llm.choice_logprobs(chats, ["First", "Second"]):
            if not lp:
                out.append(None)
                continue
            a, b = math.exp(lp["First"]), math.exp(lp["Second"])
            out.append(a / (a + b))
        return out
