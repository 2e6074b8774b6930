"""The Method contract, capabilities, and the method registry.

Contract (batch first, like scikit-learn's fit/predict)::

    class MyMethod(Method):
        name = "my-method"
        capabilities = frozenset({"llm"})
        def __init__(self, temperature: float = 0.0): ...   # config only, JSON-serializable
        def fit(self, histories): ...                       # all users at once
        def predict(self, queries) -> list[float | None]:   # P(first preferred)
        def artifacts(self) -> dict[str, str]:              # e.g. user_id -> persona

Resources (LLM, seed, cache dir, device) come through :meth:`Method.setup`,
called by the harness before ``fit``; configuration comes through the
constructor, so ``get_config()`` can record it in results.

Prediction values: a float in [0, 1] is P(first response preferred); exactly
0.5 is a tie (scored wrong); ``None`` is a failed judgment (scored wrong and
counted as failed). NaN or values outside [0, 1] are errors.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from personalrewardbench.data.schema import Query, UserHistory

# Capabilities a method may declare.
CAPABILITIES = {
    "llm": "needs an LLM from the harness (env.llm)",
    "profile": "needs user profiles (demographics); not applicable where the dataset has none",
    "train-rm": "trains a reward model (uses env.device, env.cache_dir)",
    "pairwise": "judges the two responses jointly (not one score per response)",
    "personalized": "uses the user's own history",
    "artifacts": "produces per-user artifacts (e.g. personas)",
}


class MethodError(RuntimeError):
    """A user-fixable problem with a method (unknown name, bad config, bad output)."""


@dataclass
class MethodEnv:
    """Resources the harness hands a method. Never carries labels of test pairs."""

    seed: int = 0
    llm: Any = None  # personalrewardbench.llm.base.LLM | None
    cache_dir: Path = field(default_factory=lambda: Path(".prb-cache"))
    device: str = "cpu"
    show_progress: bool = True
    options: dict[str, Any] = field(default_factory=dict)  # free-form CLI extras (e.g. persona source)


class Method(ABC):
    name: ClassVar[str] = "method"
    capabilities: ClassVar[frozenset[str]] = frozenset()

    env: MethodEnv

    def setup(self, env: MethodEnv) -> None:
        """Receive resources. Subclasses that override call ``super().setup(env)``."""
        self.env = env

    def fit(self, histories: Sequence[UserHistory]) -> None:  # noqa: B027 - default: nothing to learn
        """Learn from all users' train/val pairs at once."""

    @abstractmethod
    def predict(self, queries: Sequence[Query]) -> Sequence[float | None]:
        """One value per query, in the order given: P(first preferred), 0.5 tie, None failed."""

    def artifacts(self) -> Mapping[str, str]:
        return {}

    def usage(self) -> Mapping[str, Any]:
        """Cost counters beyond the LLM's own usage (e.g. failed judgments per user)."""
        return {}

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, read back from same-named attributes (sklearn style)."""
        sig = inspect.signature(type(self).__init__)
        out: dict[str, Any] = {}
        for pname, p in sig.parameters.items():
            if pname == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            out[pname] = getattr(self, pname, p.default)
        return out
