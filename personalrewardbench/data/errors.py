"""The data layer's error class: a problem with input data the user can fix."""

from __future__ import annotations

from personalrewardbench.cli import UserError


class DataError(UserError):
    """Bad or unreachable input data. The message names the dataset, the file or
    row and the field where it can, and says how to fix it."""
