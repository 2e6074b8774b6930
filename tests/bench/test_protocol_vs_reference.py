"""protocol_vs_reference.py: the reference SynthesizeMe package (in its own venv) and our SynthesizeMe
against one recording server, call for call. Our defaults must send the same requests per user and
phase; a variant that validates in both orders must be seen to differ (the comparison can fail)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.bench.reference_venv import reference_python
from tests.conftest import REPO

pytestmark = pytest.mark.slow
SCRIPT = REPO / "scripts" / "bench" / "protocol_vs_reference.py"


def _run(tmp_path, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "counts.json"
    run = subprocess.run([sys.executable, str(SCRIPT), "--ref-python", str(reference_python()), "--json", str(out),
                          *extra], capture_output=True, text=True, timeout=600)
    assert out.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    return run, json.loads(out.read_text())


def test_defaults_match_the_reference_call_for_call(tmp_path) -> None:
    run, counts = _run(tmp_path)
    assert run.returncode == 0 and "CALL-FOR-CALL MATCH" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]
    ref, ours = counts["reference"]["calls"], counts["ours"]["calls"]
    assert counts["match"] is True and ref == ours
    assert sum(ref.values()) > 0 and len({k.split("|")[0] for k in ref}) == 3  # three users reached the server


def test_a_variant_that_judges_both_orders_is_seen_to_differ(tmp_path) -> None:
    run, counts = _run(tmp_path, "--our-config", '{"validation_orders": "both"}')
    assert run.returncode == 1 and "SHAPES DIFFER" in run.stdout, run.stdout[-3000:]
    ref, ours = counts["reference"]["calls"], counts["ours"]["calls"]
    assert counts["match"] is False and sum(ours.values()) > sum(ref.values())
