"""One LLM interface with transformers, vLLM and OpenAI-compatible backends behind a request cache."""

from personalrewardbench.llm.base import LLM, Chat, Completion, GenerationParams, LLMError, Usage
from personalrewardbench.llm.cached import CachedLLM, ChoiceScore
from personalrewardbench.llm.factory import BACKENDS, add_llm_arguments, llm_from_args, make_llm
from personalrewardbench.llm.scripted import ScriptedLLM

__all__ = [
    "BACKENDS", "LLM", "CachedLLM", "Chat", "ChoiceScore", "Completion", "GenerationParams", "LLMError",
    "ScriptedLLM", "Usage", "add_llm_arguments", "llm_from_args", "make_llm",
]
