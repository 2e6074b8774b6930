"""Where the side-by-side tests find the reference SynthesizeMe's venv (synthesizeme 0.0.11a1 with
dspy 2.6.24, litellm 1.63.14, openai 1.109.1; ``scripts/setup test`` makes ``.venv-ref``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import REPO

REF_VENV = Path(os.environ.get("PRB_REF_VENV") or REPO / ".venv-ref")


def reference_python() -> Path:
    """The reference venv's python. Missing, the test is skipped, or fails where
    ``PRB_REQUIRE_REF_VENV=1`` (``scripts/test`` sets it: after ``scripts/setup test`` the venv exists,
    so a missing one is a broken set-up, not a reason to skip)."""
    py = REF_VENV / "bin" / "python"
    if not py.exists():
        msg = (f"no reference venv at {REF_VENV}; run scripts/setup test or set PRB_REF_VENV "
               "(synthesizeme==0.0.11a1, dspy==2.6.24, litellm==1.63.14, openai==1.109.1)")
        if os.environ.get("PRB_REQUIRE_REF_VENV") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return py
