"""Time the main job: `prb run` on the synthetic sample from a cold start, pinned to 2 CPU cores.

    python scripts/bench/bench_main_job.py [--cores 2] [--methods a,b,c] [--keep DIR]

Prints per-method wall seconds (from each results.json), the whole command's wall and CPU
seconds, the leaderboard build time, and whether a rebuild is byte-identical. The target:
`prb run` finishes in under 15 minutes on a 2-core CPU. Runs offline (HF_HUB_OFFLINE=1) with
a fresh LLM request cache, so nothing is served from earlier runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 15 * 60


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", type=int, default=2, help="pin to this many cores with taskset (0: no pinning)")
    ap.add_argument("--methods", default=None, help="comma-separated subset (default: prb run's own choice)")
    ap.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    args = ap.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="prb-bench-main-"))
    work.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "personalrewardbench.cli", "run", "--out", str(work / "results"),
           "--site", str(work / "site"), "--cache-dir", str(work / "llm-cache"), "--quiet"]
    if args.methods:
        cmd += ["--methods", args.methods]
    if args.cores and shutil.which("taskset"):
        cmd = ["taskset", "-c", ",".join(str(i) for i in range(args.cores)), *cmd]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PRB_CACHE_DIR": str(work / "cache"),
           "OMP_NUM_THREADS": str(args.cores or os.cpu_count()), "TOKENIZERS_PARALLELISM": "false"}
    print("running:", " ".join(cmd), flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=work)  # cold: caches under work
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(proc.stdout[-4000:])
    if proc.returncode:
        print(proc.stderr[-3000:], file=sys.stderr)

    print(f"{'method':18s} {'status':15s} {'accuracy':>8s} {'seconds':>9s}")
    for path in sorted((work / "results").rglob("results.json")):
        res = json.loads(path.read_text())
        acc = (res.get("scores") or {}).get("accuracy")
        print(f"{res['method']['name']:18s} {res['status']:15s} {'' if acc is None else f'{100 * acc:.1f}':>8s} "
              f"{res['cost']['seconds_total']:9.1f}")
    print(f"prb run: exit {proc.returncode}, wall {wall:.1f} s, CPU {cpu:.1f} s "
          f"(cores pinned: {args.cores or 'no'}); target {TARGET_S} s: {'met' if wall < TARGET_S else 'MISSED'}")

    from personalrewardbench.leaderboard.build import build_site

    t = time.perf_counter()
    build_site([work / "results"], work / "site2")
    build_s = time.perf_counter() - t
    same = _files(work / "site") == _files(work / "site2")
    print(f"leaderboard build: {build_s:.1f} s; rebuild byte-identical to prb run's site: {same}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
