"""gpu_check.py --tiny: the GPU check's code runs end to end on the CPU and prints every row.

Runs the script as a user would (a subprocess), with the assets folder that
--prepare-assets writes for the GPU machine, so both the asset path and every
section are exercised. A few tens of seconds on two cores.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "bench" / "gpu_check.py"
SECTIONS = ("model build", "choice scoring", "generation", "prefix reuse", "bt-rm training", "SynthesizeMe fit",
            "peak GPU memory")


def test_gpu_check_tiny_prints_every_row(tmp_path):
    assets = tmp_path / "assets"
    prep = subprocess.run([sys.executable, str(SCRIPT), "--prepare-assets", str(assets)], capture_output=True,
                          text=True, timeout=300)
    assert prep.returncode == 0, prep.stderr[-2000:]
    size = sum(f.stat().st_size for f in assets.rglob("*") if f.is_file())
    assert size < 64 * 2**20  # what the GPU machine can be handed
    out = tmp_path / "rows.json"
    run = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--assets", str(assets), "--json", str(out),
                          "--budget-s", "900", "--deadline-s", "1200"], capture_output=True, text=True, timeout=1300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    table = run.stdout[run.stdout.rindex("gpu_check finished"):]
    for name in SECTIONS:
        assert any(line.startswith(name) for line in table.splitlines()), f"no {name!r} row in:\n{table}"
    rows = json.loads(out.read_text())["rows"]
    assert [next(n for n in SECTIONS if r["section"].startswith(n)) for r in rows] == [
        "model build", "choice scoring", "generation", "prefix reuse", "bt-rm training", "SynthesizeMe fit",
        "peak GPU memory"]
    for r in rows[:-1]:
        assert r["status"].startswith("ok"), r
    for r in rows[1:4] + rows[5:6]:
        assert r["ratio"] is not None and r["ratio"] > 0, r
    sme = rows[5]
    assert sme["status"].endswith("(same)"), sme  # batched and user-by-user fits made the same LLM calls
    assert rows[-1]["status"] == "n/a on the CPU"
