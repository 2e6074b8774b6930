"""Overhead of the sandbox: the same method run in-process and through SandboxedMethod, side by side.

Uses the `length` baseline (almost no work of its own, so the figure is the sandbox's own cost:
process start, isolation set-up, JSON over pipes for every history and query) on a generated
benchmark of N users. Prints seconds for each and the ratio, plus the start-up time alone.

    python scripts/bench/bench_sandbox_overhead.py [--users 2000] [--pairs 30] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--pairs", type=int, default=30, help="pairs per user (half train, a quarter val, a quarter test)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from personalrewardbench.sandbox_isolation import detect_mode

    from personalrewardbench.evaluate import make_queries
    from personalrewardbench.methods import load_method
    from personalrewardbench.submissions.sandbox import SandboxedMethod

    bench = make_benchmark(args.users, args.pairs)
    queries, _ = make_queries(bench.pairs_of("test"), 0)
    folder = REPO / "baselines" / "length"
    print(f"benchmark: {args.users} users, {len(bench.pairs)} pairs, {len(queries)} queries; "
          f"sandbox mode: {detect_mode()}")
    inproc, sandboxed, starts = [], [], []
    for _ in range(args.repeats):
        inproc.append(run_once(load_method(str(folder)), bench, queries))
        t = time.perf_counter()
        m = SandboxedMethod(folder)
        starts.append(time.perf_counter() - t)
        try:
            sandboxed.append(starts[-1] + run_once(m, bench, queries))
        finally:
            m.close()
    a, b, s = statistics.median(inproc), statistics.median(sandboxed), statistics.median(starts)
    print(f"in-process   fit+predict         {a:8.3f} s (median of {args.repeats})")
    print(f"sandboxed    start+fit+predict   {b:8.3f} s (start alone {s:.3f} s)")
    print(f"sandbox cost {b - a:8.3f} s = start-up {s:.3f} s + {1e6 * (b - a - s) / len(queries):.0f} ms per 1,000 "
          f"queries (JSON over pipes for histories and queries, both ways)")


if __name__ == "__main__":
    main()
