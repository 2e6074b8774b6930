"""One rule for "this profile value is missing", used on every path that reads profiles or personas.

A value is missing when it is None, a float NaN (what pandas/parquet give for an
empty survey cell), an empty or whitespace-only string, one of the strings
``nan``, ``none``, ``null`` (any case: what a NaN or None becomes after a
``str()`` round trip through CSV or JSON), or an empty list/dict. Missing values
are left out of prompts instead of being shown as ``- Age: nan``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

MISSING_STRINGS = frozenset({"nan", "none", "null"})


def is_missing(value: Any) -> bool:
    """True for None, NaN, "", "nan"/"None"/"null" (any case), and empty containers."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, str):
        text = value.strip()
        return not text or text.lower() in MISSING_STRINGS
    if isinstance(value, Mapping | list | tuple | set):
        return len(value) == 0
    return False


def present_text(value: Any) -> str | None:
    """``value`` as a stripped string, or None when it is missing (see :func:`is_missing`)."""
    if is_missing(value):
        return None
    text = str(value).strip()
    return None if is_missing(text) else text
