"""Benchmark: memory of loading a published-schema file with one very long field.

Writes the 12-row published-schema fixture with one response of ``--mb`` MB of words (default 50),
then, each in a fresh child process, measures the peak RSS above the child's own baseline of
(1) the bare minimum any loader pays: reading the line and ``json.loads`` of it, and
(2) ``load_benchmark`` on the file (validation, normalization, format marks, hashing), then
``prb data audit``'s computation on it. Prints both and the ratio (2)/(1) side by side. Target: the
harness stays within 3x the bare minimum (before the piecewise normalization it was ~6x: a 200 MB
line peaked at 3.3 GB).

    python scripts/bench/bench_long_text.py [--mb 50] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "data" / "fixtures" / "published" / "prism_personalized_0125"

CHILD = r"""
import json, resource, sys
mode, path = sys.argv[1], sys.argv[2]
import personalrewardbench.data  # imports are not what is measured
from personalrewardbench.data import load_benchmark
from personalrewardbench.data.audit import audit_benchmark
import scipy.stats  # noqa: F401  (the audit's interval)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if mode == "bare":
    with open(path, "rb") as f:
        recs = [json.loads(line) for line in f]
else:
    bench = load_benchmark(path)
    audit_benchmark(bench)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)
"""


def write_input(out: Path, mb: int) -> Path:
    rows = [json.loads(line) for s in ("train", "validation", "test")
            for line in (FIXTURE / f"{s}.jsonl").read_text().splitlines() if line.strip()]
    unit = "word and more words "
    with open(out, "w") as f:
        for i, r in enumerate(rows):
            if i == 7:
                r["chosen"]["content"] = unit * (mb * 1_000_000 // len(unit))
            f.write(json.dumps(r) + "\n")
    return out


def peak(mode: str, path: Path) -> float:
    res = subprocess.run([sys.executable, "-c", CHILD, mode, str(path)], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    return float(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=50)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        path = write_input(work / "long.jsonl", args.mb)
        bare, harness = peak("bare", path), peak("harness", path)
    print(f"one {args.mb} MB field: peak RSS above baseline: bare read + json.loads {bare:.0f} MB, "
          f"load_benchmark + audit {harness:.0f} MB; ratio {harness / bare:.2f}x (target <= 3x)")


if __name__ == "__main__":
    main()
