"""PersonalRewardBench: a benchmark harness and leaderboard for personalized reward models."""

from personalrewardbench.data.schema import (
    Benchmark,
    Manifest,
    Message,
    PreferencePair,
    Query,
    UserHistory,
)
from personalrewardbench.methods import Method, MethodEnv

__version__ = "0.1.0"

__all__ = [
    "Benchmark",
    "Manifest",
    "Message",
    "Method",
    "MethodEnv",
    "PreferencePair",
    "Query",
    "UserHistory",
    "__version__",
]
