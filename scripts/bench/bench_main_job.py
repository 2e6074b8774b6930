"""The main job on a quiet and on a busy machine, side by side: cold `prb run`, then the same with CPU hogs.

    python scripts/bench/bench_main_job.py                       # the whole default job (minutes)
    python scripts/bench/bench_main_job.py --methods memory      # a quick check with one method
    python scripts/bench/bench_main_job.py --methods default-judge --users 4 --wait-policy-too

Each run is cold: its own empty working folder, cache root (PRB_CACHE_DIR: built data, LLM requests,
embeddings, checkpoints) and results; only the converted embedded model ($PRB_MODEL_CACHE) is shared.
Both `prb run` and the hogs (``python -c "while True: pass"``, ``--hogs``, default 1) are pinned to the
same ``--cores`` with taskset, so a bigger machine stands in for a 2-core one. Printed: wall and CPU
seconds of each run, seconds per method (from each results.json) with the busy/quiet ratio, the
threads each run chose, and the ratio of the whole job. With one hog on 2 cores a fair share is 2/3 of
the CPU, so the target is busy <= 2.5x quiet. ``--wait-policy-too`` adds a busy run with
OMP_WAIT_POLICY=ACTIVE (OpenMP's spinning waits, what prb used before it set PASSIVE) to show the
cause. The last lines say whether a rebuild of the quiet run's site is byte-identical.
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
from dataclasses import dataclass, field
from pathlib import Path

TARGET_RATIO = 2.5
HOG = "while True: pass"


@dataclass
class JobRun:
    label: str
    rc: int
    wall: float
    cpu: float
    methods: dict[str, float] = field(default_factory=dict)  # method -> seconds_total
    accuracy: dict[str, float | None] = field(default_factory=dict)
    threads: dict | None = None
    tail: str = ""


def _pin(cmd: list[str], cores: int) -> list[str]:
    if cores and shutil.which("taskset"):
        return ["taskset", "-c", ",".join(str(i) for i in range(cores)), *cmd]
    return cmd


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def run_job(work: Path, label: str, args: argparse.Namespace, extra_env: dict[str, str]) -> JobRun:
    """One cold `prb run` in ``work`` (created empty); returns its timings."""
    work.mkdir(parents=True, exist_ok=False)
    cmd = [sys.executable, "-c", "import sys; from personalrewardbench.cli import main; sys.exit(main(sys.argv[1:]))",
           "run", "--out", str(work / "results"), "--site", str(work / "site"), "--quiet"]
    if args.methods:
        cmd += ["--methods", args.methods]
    if args.users:
        cmd += ["--users", args.users]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PRB_CACHE_DIR": str(work / "cache"),
           **extra_env}
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):  # let prb choose
        env.pop(var, None)
    if "OMP_WAIT_POLICY" not in extra_env:
        env.pop("OMP_WAIT_POLICY", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(_pin(cmd, args.cores), env=env, capture_output=True, text=True, cwd=work)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = JobRun(label, proc.returncode, wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
                 tail=(proc.stdout[-2500:] + proc.stderr[-1500:]))
    for path in sorted((work / "results").rglob("results.json")):
        res = json.loads(path.read_text())
        name = res["method"]["name"]
        out.methods[name] = float(res["cost"]["seconds_total"])
        out.accuracy[name] = (res.get("scores") or {}).get("accuracy")
        out.threads = out.threads or res["provenance"].get("threads")
    return out


def start_hogs(n: int, cores: int) -> list[subprocess.Popen]:
    return [subprocess.Popen(_pin([sys.executable, "-c", HOG], cores)) for _ in range(n)]


def stop_hogs(hogs: list[subprocess.Popen]) -> None:
    for h in hogs:
        h.kill()
    for h in hogs:
        h.wait()


def busy_run(work: Path, label: str, args: argparse.Namespace, extra_env: dict[str, str]) -> JobRun:
    hogs = start_hogs(args.hogs, args.cores)
    try:
        time.sleep(0.5)
        return run_job(work, label, args, extra_env)
    finally:
        stop_hogs(hogs)


def report(runs: list[JobRun], quiet: JobRun) -> None:
    methods = sorted({m for r in runs for m in r.methods}, key=lambda m: -quiet.methods.get(m, 0.0))
    head = f"{'method':28s}" + "".join(f"{r.label:>16s}" for r in runs) + "".join(
        f"{'ratio ' + r.label:>22s}" for r in runs[1:])
    print(head)
    print("-" * len(head))
    for m in methods:
        cells = "".join(f"{r.methods.get(m, float('nan')):16.1f}" for r in runs)
        ratios = "".join(f"{r.methods.get(m, float('nan')) / max(quiet.methods.get(m, 0.0), 1e-9):22.2f}"
                         for r in runs[1:])
        print(f"{m:28s}{cells}{ratios}")
    print(f"{'whole prb run (wall s)':28s}" + "".join(f"{r.wall:16.1f}" for r in runs)
          + "".join(f"{r.wall / quiet.wall:22.2f}" for r in runs[1:]))
    print(f"{'whole prb run (CPU s)':28s}" + "".join(f"{r.cpu:16.1f}" for r in runs))
    for r in runs:
        t = r.threads or {}
        print(f"{r.label}: exit {r.rc}; threads {t.get('threads')} ({t.get('source')}), available CPUs "
              f"{t.get('available_cpus')}, OMP_WAIT_POLICY {t.get('omp_wait_policy')}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", type=int, default=2, help="pin prb run and the hogs to this many cores (0: no pinning)")
    ap.add_argument("--hogs", type=int, default=1, help="CPU-bound processes beside the busy run (default 1)")
    ap.add_argument("--methods", default=None, help="comma-separated subset (default: prb run's own plan)")
    ap.add_argument("--users", default=None, help="passed to prb run --users (a shorter job)")
    ap.add_argument("--threads", type=int, default=None, help="passed to prb run --threads (default: prb's choice)")
    ap.add_argument("--wait-policy-too", action="store_true",
                    help="also a busy run with OMP_WAIT_POLICY=ACTIVE (spinning OpenMP waits) to show the cause")
    ap.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    args = ap.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="prb-bench-main-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"cold prb run{' --methods ' + args.methods if args.methods else ''}"
          f"{' --users ' + args.users if args.users else ''}, pinned to {args.cores or 'all'} core(s); "
          f"busy = {args.hogs} x `python -c \"{HOG}\"` on the same cores; load before: {os.getloadavg()[0]:.1f}",
          flush=True)
    runs = [run_job(work / "quiet", "quiet", args, {})]
    print(f"  quiet done: {runs[0].wall:.1f} s", flush=True)
    runs.append(busy_run(work / "busy", "busy", args, {}))
    print(f"  busy done: {runs[1].wall:.1f} s", flush=True)
    if args.wait_policy_too:
        runs.append(busy_run(work / "busy-active", "busy-ACTIVE", args, {"OMP_WAIT_POLICY": "ACTIVE"}))
        print(f"  busy with OMP_WAIT_POLICY=ACTIVE done: {runs[2].wall:.1f} s", flush=True)
    print()
    report(runs, runs[0])
    ratio = runs[1].wall / runs[0].wall
    print(f"\nbusy / quiet = {ratio:.2f} (target <= {TARGET_RATIO}): {'met' if ratio <= TARGET_RATIO else 'MISSED'}; "
          f"load after: {os.getloadavg()[0]:.1f}")
    for r in runs:
        if r.rc:
            print(f"\n{r.label} run failed (exit {r.rc}):\n{r.tail}", file=sys.stderr)

    from personalrewardbench.leaderboard.build import build_site
    from personalrewardbench.seal import load_key

    if (work / "quiet" / "site").is_dir():
        t = time.perf_counter()
        os.environ["PRB_CACHE_DIR"] = str(work / "quiet" / "cache")  # the seal key the quiet run made
        key = load_key(create=False)
        build_site([work / "quiet" / "results"], work / "quiet" / "site2", seal_key=key)
        same = _files(work / "quiet" / "site") == _files(work / "quiet" / "site2")
        print(f"leaderboard rebuild: {time.perf_counter() - t:.1f} s; byte-identical to prb run's site: {same}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return max(r.rc for r in runs)


if __name__ == "__main__":
    sys.exit(main())
