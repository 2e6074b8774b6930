"""SynthesizeMe: batched-across-users fit vs the user-by-user loop, side by side in one run.

Same backend and model for both (default: the embedded SmolLM2-135M on CPU),
same users and settings, a fresh request cache for each mode. Prints wall time,
LLM calls and tokens for each mode (and per user), the speed-up, and, for the
batched model, LLM calls and tokens per 1,000 predict judgments.

    python scripts/bench/bench_synthesizeme.py                      # 20 users, SmolLM2 on CPU
    python scripts/bench/bench_synthesizeme.py --users 5 --candidates 1 --json out.json

Settings are reduced from the method's defaults (fewer candidates, shorter
reasoning cap) so that both modes finish in minutes on a CPU; the request
pattern per user is the same as with the defaults, just shorter.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from personalrewardbench.data.schema import Query
from personalrewardbench.data.synthetic import sample_benchmark
from personalrewardbench.llm import make_llm
from personalrewardbench.methods import MethodEnv, load_method


def _queries(bench: Any) -> list[Query]:
    out = []
    for p in bench.pairs_of("test"):
        for order, (a, b) in (("cf", (p.chosen, p.rejected)), ("cs", (p.rejected, p.chosen))):
            qid = hashlib.sha256(f"{p.pair_id}|{order}".encode()).hexdigest()[:16]
            out.append(Query(qid, p.user_id, p.context, a, b))
    return out


def _usage(llm: Any) -> dict[str, float]:
    u = llm.usage
    return {"calls": u.calls, "cache_hits": u.cache_hits, "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens}


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in after}


def run(args: argparse.Namespace) -> dict[str, Any]:
    bench = sample_benchmark(seed=args.seed, n_users=args.users, n_train=(args.train_min, args.train_max),
                             n_val=args.val, n_test=args.test)
    histories = bench.histories()
    config = {"num_candidates": args.candidates, "max_labeled_demos": args.labeled,
              "max_judge_tokens": args.judge_tokens, "max_persona_tokens": args.persona_tokens,
              "persona_program": args.persona_program}
    report: dict[str, Any] = {"users": len(histories), "config": config, "backend": args.backend,
                              "model": args.model or "embedded SmolLM2-135M-Instruct", "modes": {}}
    with tempfile.TemporaryDirectory(prefix="prb-bench-sme-") as tmp:
        for mode, batch in (("batched", True), ("user-by-user", False)):
            llm = make_llm(args.backend, args.model, cache_dir=str(Path(tmp) / mode), use_cache=True,
                           base_url=args.base_url)
            if not report.get("llm_identity"):
                report["llm_identity"] = llm.identity
            method = load_method("synthesizeme", {**config, "batch_across_users": batch})
            method.setup(MethodEnv(seed=args.seed, llm=llm, show_progress=False))
            before = _usage(llm)
            t0 = time.perf_counter()
            method.fit(histories)
            seconds = time.perf_counter() - t0
            used = _delta(_usage(llm), before)
            report["modes"][mode] = {
                "seconds_fit": round(seconds, 2), **used,
                "llm_batches": sum(method.usage()["llm_batches"].values()),
                "per_user": {k: round(v / len(histories), 1) for k, v in used.items()},
            }
            print(f"[{mode}] fit {seconds:.1f}s, {used['calls']} LLM calls, "
                  f"{report['modes'][mode]['llm_batches']} batch calls", file=sys.stderr, flush=True)
            if batch:
                queries = _queries(bench)
                before = _usage(llm)
                t0 = time.perf_counter()
                preds = method.predict(queries)
                seconds = time.perf_counter() - t0
                used = _delta(_usage(llm), before)
                per_1000 = {k: round(v * 1000 / len(queries), 1) for k, v in used.items()}
                report["predict"] = {"judgments": len(queries), "seconds": round(seconds, 2),
                                     "failed": sum(p is None for p in preds), "per_1000_judgments": per_1000,
                                     "seconds_per_1000_judgments": round(seconds * 1000 / len(queries), 1)}
                report["failed_fit_judgments"] = method.usage()["totals"].get("failed_fit_judgments", 0)
            llm.close()
    b, loop = report["modes"]["batched"], report["modes"]["user-by-user"]
    report["same_llm_calls"] = b["calls"] == loop["calls"]
    report["speedup"] = round(loop["seconds_fit"] / b["seconds_fit"], 2) if b["seconds_fit"] else None
    return report


def _print(report: dict[str, Any]) -> None:
    print(f"SynthesizeMe fit, {report['users']} users, {report['llm_identity']}")
    print(f"settings: {report['config']}")
    print(f"{'mode':<14}{'fit s':>9}{'LLM calls':>11}{'batches':>9}{'prompt tok':>12}{'compl tok':>11}"
          f"{'calls/user':>12}{'tok/user':>10}")
    for mode, m in report["modes"].items():
        pu = m["per_user"]
        print(f"{mode:<14}{m['seconds_fit']:>9.1f}{m['calls']:>11}{m['llm_batches']:>9}{m['prompt_tokens']:>12}"
              f"{m['completion_tokens']:>11}{pu['calls']:>12}{pu['prompt_tokens'] + pu['completion_tokens']:>10.0f}")
    print(f"same LLM calls in both modes: {report['same_llm_calls']}; speed-up of batched fit: "
          f"{report['speedup']}x")
    p = report["predict"]
    print(f"predict: {p['judgments']} judgments in {p['seconds']}s ({p['failed']} failed); per 1,000 judgments: "
          f"{p['per_1000_judgments']['calls']:.0f} LLM calls, {p['per_1000_judgments']['prompt_tokens']:.0f} prompt + "
          f"{p['per_1000_judgments']['completion_tokens']:.0f} completion tokens, "
          f"{p['seconds_per_1000_judgments']}s")
    print(f"failed fit judgments (batched run): {report['failed_fit_judgments']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--train-min", type=int, default=4)
    ap.add_argument("--train-max", type=int, default=6)
    ap.add_argument("--val", type=int, default=1)
    ap.add_argument("--test", type=int, default=2)
    ap.add_argument("--candidates", type=int, default=2, help="num_candidates (method default 10)")
    ap.add_argument("--labeled", type=int, default=4, help="max_labeled_demos (method default 4)")
    ap.add_argument("--judge-tokens", type=int, default=32, help="max_judge_tokens (method default 8192)")
    ap.add_argument("--persona-tokens", type=int, default=64, help="max_persona_tokens (method default 8192)")
    ap.add_argument("--persona-program", default="builtin",
                    help="persona_program (method default 'reference': the reference's Theta, ~20k tokens)")
    ap.add_argument("--backend", default="transformers")
    ap.add_argument("--model", default=None)
    ap.add_argument("--base-url", default=None, help="openai backend: server URL")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    report = run(args)
    _print(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
