"""Data layer: sources (published PersonalRewardBench, raw Chatbot Arena, raw PRISM,
summarize-from-feedback, local files), build, validate, cache.

Public API: :func:`load_benchmark`, :func:`save_benchmark`, :func:`build_benchmark`,
:class:`DataError`, and the core types in :mod:`personalrewardbench.data.schema`.
"""

from __future__ import annotations

from personalrewardbench.data.build import RAW_SOURCES, build_benchmark
from personalrewardbench.data.errors import DataError
from personalrewardbench.data.loader import load_benchmark
from personalrewardbench.data.schema import Benchmark, Manifest, Message, PreferencePair, Query, UserHistory
from personalrewardbench.data.store import load_built, save_benchmark

__all__ = [
    "RAW_SOURCES",
    "Benchmark",
    "DataError",
    "Manifest",
    "Message",
    "PreferencePair",
    "Query",
    "UserHistory",
    "build_benchmark",
    "load_benchmark",
    "load_built",
    "save_benchmark",
]
