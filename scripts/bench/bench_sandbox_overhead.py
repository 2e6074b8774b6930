"""Overhead of the sandbox, before and after the bubblewrap rewrite, side by side in one run.

The same method (the `length` baseline: almost no work of its own, so the figures are the
sandbox's own cost: process start, isolation set-up, JSON over pipes for every history and
query) runs on a generated benchmark of N users:

- in-process (no sandbox at all: the floor);
- before: the old sandbox (the flat ``personalrewardbench/sandbox*.py`` modules of commit
  ``--before-ref``, namespaces set up by hand), run from a throw-away virtual environment that
  imports the old package (skipped with a note when the ref is not in this repository);
- after: ``personalrewardbench.submissions.SandboxedMethod`` under bubblewrap (and, for
  reference, the same child process with ``--isolation none``, i.e. without bubblewrap).

It prints, for each, the start-up time (process start and constructing the adapter) and the
overhead per 1,000 queries over the in-process run (fit + predict of all queries minus the
in-process time, divided by the number of queries), the ratio after/before, and the target
(after at most 2x the before figures).

    python scripts/bench/bench_sandbox_overhead.py [--users 2000] [--pairs 30] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BEFORE_REF = "11a655f"  # the last commit with the flat sandbox modules (before personalrewardbench/submissions/)


def make_benchmark(n_users: int, n_pairs: int):
    from personalrewardbench.data.schema import Benchmark, Manifest, Message, PreferencePair, content_hash

    pairs = []
    for u in range(n_users):
        for k in range(n_pairs):
            split = "train" if k < n_pairs // 2 else "val" if k < 3 * n_pairs // 4 else "test"
            pairs.append(PreferencePair(
                pair_id=f"u{u}-p{k}", user_id=f"u{u}", dataset="bench",
                context=(Message("user", f"Question {k} of user {u}: " + "words " * 40),),
                chosen="A considered answer. " * (10 + k % 7), rejected="Another answer. " * (8 + u % 5),
                split=split, meta={"k": k}))
    profiles = {f"u{u}": None for u in range(n_users)}
    manifest = Manifest(name="bench", sources=({"id": "generated", "kind": "bench"},), filters={}, seed=0,
                        counts={}, content_hash=content_hash(pairs, profiles), synthetic=True)
    return Benchmark(pairs=tuple(pairs), profiles=profiles, manifest=manifest)


def run_once(method, bench, queries) -> float:
    from personalrewardbench.methods import MethodEnv

    t = time.perf_counter()
    method.setup(MethodEnv(seed=0, show_progress=False))
    method.fit(bench.histories())
    for s in range(0, len(queries), 256):  # the chunk size prb evaluate uses
        method.predict(queries[s:s + 256])
    return time.perf_counter() - t


def measure(which: str, users: int, pairs: int, repeats: int) -> dict[str, float]:
    """Median seconds: in-process fit+predict, sandbox start-up, sandbox start+fit+predict."""
    from personalrewardbench.evaluate import make_queries
    from personalrewardbench.methods import load_method

    if which == "before":
        from personalrewardbench.sandbox import SandboxedMethod, SandboxLimits  # the old flat modules

        def make(folder):
            return SandboxedMethod(folder, limits=SandboxLimits(memory_mb=8192))
    else:
        from personalrewardbench.submissions import SandboxedMethod, SandboxLimits

        isolation = "none" if which == "after-none" else "bwrap"

        def make(folder):
            return SandboxedMethod(folder, limits=SandboxLimits(isolation=isolation, trust_code=True))

    bench = make_benchmark(users, pairs)
    queries, _ = make_queries(bench.pairs_of("test"), 0)
    folder = REPO / "baselines" / "length"
    inproc, total, starts = [], [], []
    for _ in range(repeats):
        inproc.append(run_once(load_method(str(folder)), bench, queries))
        t = time.perf_counter()
        m = make(folder)
        starts.append(time.perf_counter() - t)
        try:
            total.append(starts[-1] + run_once(m, bench, queries))
            mode = m.usage()["sandbox"]["mode"]
        finally:
            m.close()
    return {"inproc": statistics.median(inproc), "start": statistics.median(starts),
            "total": statistics.median(total), "n_queries": len(queries), "mode": mode}


def before_environment(ref: str, tmp: Path) -> Path | None:
    """A Python that imports the package as of ``ref`` (and this venv's libraries); None if ``ref`` is unknown."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "personalrewardbench"], capture_output=True)
    if archive.returncode != 0:
        return None
    src = tmp / "src"
    src.mkdir()
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    libs = [p for p in sys.path if p.endswith("site-packages") and os.path.isdir(p)]
    # plain path lines: the editable finder of this checkout is not installed there, so the old package wins
    (site / "prb_before.pth").write_text("\n".join([str(src), *libs]) + "\n")
    for d in (tmp, src, venv):
        os.chmod(d, 0o755)
    return venv / "bin" / "python"


def overhead_ms(r: dict[str, float], inproc: float) -> float:
    return 1000 * (r["total"] - r["start"] - inproc) / r["n_queries"] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--pairs", type=int, default=30, help="pairs per user (half train, a quarter val, a quarter test)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--before-ref", default=BEFORE_REF, help="git ref of the old sandbox ('' to skip it)")
    ap.add_argument("--inner", choices=("before", "after", "after-none"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        print(json.dumps(measure(args.inner, args.users, args.pairs, args.repeats)))
        return

    after = measure("after", args.users, args.pairs, args.repeats)
    plain = measure("after-none", args.users, args.pairs, args.repeats)
    before = None
    note = ""
    if args.before_ref:
        with tempfile.TemporaryDirectory(prefix="prb-bench-before-") as tmp:
            python = before_environment(args.before_ref, Path(tmp))
            if python is None:
                note = f"(before: git ref {args.before_ref} not found; skipped)"
            else:
                proc = subprocess.run([str(python), __file__, "--inner", "before", "--users", str(args.users),
                                       "--pairs", str(args.pairs), "--repeats", str(args.repeats)],
                                      capture_output=True, text=True, cwd=str(REPO))
                if proc.returncode == 0:
                    before = json.loads(proc.stdout.strip().splitlines()[-1])
                else:
                    note = f"(before: failed to run: {proc.stderr.strip().splitlines()[-1:]})"
    inproc = after["inproc"]
    print(f"benchmark: {args.users} users, {after['n_queries']} queries; median of {args.repeats}; "
          f"in-process fit+predict {inproc:.3f} s (the floor)")
    print(f"{'':34s}{'start-up':>12s}{'per 1,000 queries':>20s}")
    rows = []
    if before is not None:
        rows.append((f"before ({before['mode']} mode, {args.before_ref})", before["start"],
                     overhead_ms(before, before["inproc"])))
    rows.append(("after, child without isolation", plain["start"], overhead_ms(plain, plain["inproc"])))
    rows.append((f"after ({after['mode']})", after["start"], overhead_ms(after, inproc)))
    for name, start, per in rows:
        print(f"{name:34s}{start:10.3f} s{per:15.0f} ms")
    if before is not None:
        print(f"{'after / before':34s}{after['start'] / before['start']:10.2f} x"
              f"{overhead_ms(after, inproc) / max(1e-9, overhead_ms(before, before['inproc'])):15.2f} x"
              "   (target: at most 2x)")
    print("reference (before, quiet machine, from the issue): 0.51 s start-up, ~155 ms per 1,000 queries " + note)


if __name__ == "__main__":
    main()
