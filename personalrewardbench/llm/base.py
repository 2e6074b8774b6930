"""The one LLM interface every LLM-based method goes through.

A backend implements ``_generate`` and ``_choice_logprobs`` on uncached
requests; the public ``generate``/``choice_logprobs`` (implemented in the
backends' shared base, with the request cache and accounting) are what methods
call. Prompt builders (judge prompts) live with the methods, not here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from personalrewardbench.data.schema import Message

Chat = Sequence[Message]


class LLMError(RuntimeError):
    """A user-fixable LLM problem (unknown model, missing file, server down).

    The message names the thing and the fix; the CLI prints it without a traceback.
    """


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0

    def key(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    finish_reason: str = "stop"  # "stop" | "length" | "error"
    cached: bool = False
    prompt_truncated: bool = False  # the backend had to left-truncate the prompt to fit


@dataclass
class Usage:
    """Running totals for one LLM object (what results report as cost)."""

    calls: int = 0  # requests answered (cache hits included)
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0  # wall time spent inside generate/choice_logprobs
    truncated_prompts: int = 0
    failed_requests: int = 0
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


class LLM(ABC):
    """Batched chat LLM.

    - ``identity``: backend + model + revision/file hash. Part of every cache key.
    - ``context_length``: the model's maximum tokens (prompt + generation).
    - ``count_tokens(chat)``: tokens of the rendered chat prompt (template applied).
    - ``generate(chats, params)``: one Completion per chat, in input order.
    - ``choice_logprobs(chats, choices)``: for each chat, {choice: log P(choice is
      the next answer)}; tokenizer variants (leading space, case) are handled
      by the backend. An empty dict marks a request that could not be scored
      (counted in ``usage.failed_requests``).
    - ``usage``: running :class:`Usage` totals.
    """

    usage: Usage

    @property
    @abstractmethod
    def identity(self) -> str: ...

    @property
    @abstractmethod
    def context_length(self) -> int: ...

    @abstractmethod
    def count_tokens(self, chat: Chat) -> int: ...

    @abstractmethod
    def generate(self, chats: Sequence[Chat], params: GenerationParams | None = None) -> list[Completion]: ...

    @abstractmethod
    def choice_logprobs(self, chats: Sequence[Chat], choices: Sequence[str]) -> list[dict[str, float]]: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release engines, servers, files."""
