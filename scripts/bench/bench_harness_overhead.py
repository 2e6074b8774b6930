"""Harness overhead of `prb evaluate`: the same run with a model that answers instantly vs SmolLM2.

Runs default-judge (direct, choice log-probabilities) on the same fixture twice, through the
same code path as `prb evaluate` (load_method, load_benchmark, run_evaluation: fit, query
building, prompt fitting, chunked predict with crash-safe appends, scoring with 1,000 bootstrap
resamples, provenance, results files), once with ScriptedLLM (no model work at all) and once
with the embedded SmolLM2-135M-Instruct (transformers backend, request cache off).

    harness overhead = wall time of the scripted run / wall time of the SmolLM2 run

Target: under 5%. Model loading is timed separately and not counted in the SmolLM2 run.

    python scripts/bench/bench_harness_overhead.py [--dataset synthetic] [--users 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    from personalrewardbench.data import load_benchmark
    from personalrewardbench.data.schema import Message
    from personalrewardbench.evaluate import run_evaluation
    from personalrewardbench.llm import ScriptedLLM, make_llm
    from personalrewardbench.methods import MethodEnv, load_method

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="synthetic")
    ap.add_argument("--users", type=int, default=2)
    ap.add_argument("--method", default="default-judge")
    ap.add_argument("--repeats", type=int, default=3, help="scripted runs (median reported)")
    args = ap.parse_args()

    bench = load_benchmark(args.dataset)
    tmp = Path(tempfile.mkdtemp(prefix="prb-overhead-"))

    def run(llm, tag: str) -> tuple[float, dict]:
        method = load_method(args.method)
        t = time.perf_counter()
        res = run_evaluation(method, bench, MethodEnv(seed=0, llm=llm, show_progress=False), tmp / tag,
                             n_users=args.users, resume=False, show_progress=False, command="bench")
        return time.perf_counter() - t, res

    def instant(chat, choices):
        return {c: (-0.1 if i == 0 else -2.3) for i, c in enumerate(choices)}

    scripted = []
    for k in range(args.repeats):
        secs, res = run(ScriptedLLM(choice_fn=instant, identity="instant"), f"scripted{k}")
        scripted.append(secs)
    n_q = res["scores"]["n_judgments"]
    t_scripted = statistics.median(scripted)
    print(f"fixture: {bench.name}, {args.users} users, {n_q} judgments, method {args.method}")
    print(f"scripted LLM (instant) runs: {', '.join(f'{s:.3f}' for s in scripted)} s; median {t_scripted:.3f} s")

    t = time.perf_counter()
    llm = make_llm("transformers", None, use_cache=False)
    llm.count_tokens([Message("user", "hello")])  # force the lazy load, if any
    t_load = time.perf_counter() - t
    secs, res = run(llm, "smollm2")
    model_s = res["cost"]["llm_seconds"]
    print(f"SmolLM2 ({llm.identity}): load {t_load:.1f} s (not counted), run {secs:.2f} s, "
          f"of which inside LLM calls {model_s:.2f} s; accuracy {res['scores']['accuracy']:.3f}")
    print(f"harness overhead = scripted run / SmolLM2 run = {100 * t_scripted / secs:.2f}% (target < 5%)")
    print(f"time outside LLM calls in the SmolLM2 run = {100 * (secs - model_s) / secs:.2f}%")


if __name__ == "__main__":
    main()
