"""Error types shared by the method registry and the submission path.

A leaf module (it imports nothing from the package), so :mod:`personalrewardbench.methods`
and :mod:`personalrewardbench.submissions` can both use these without importing each other.
"""

from __future__ import annotations


class MethodError(RuntimeError):
    """A user-fixable problem with a method (unknown name, bad config, bad output)."""
