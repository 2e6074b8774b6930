"""LLM cost of each LLM-judge method: calls and tokens per user for fit, per 1,000 judgments for predict.

Every method runs on the same users of the synthetic sample benchmark, on one
LLM (default: the embedded SmolLM2-135M on CPU) with the request cache off, so
every call is counted as made. Fit and predict are measured apart (the LLM's
usage counters before and after each). Demographics needs profiles and the
sample has none, so for it every user gets the same PRISM-shaped example
profile (it is only there to cost the prompt).

    python scripts/bench/bench_judge_costs.py                       # 3 users, 1 test pair each
    python scripts/bench/bench_judge_costs.py --users 10 --test 2 --methods memory,default-judge
    python scripts/bench/bench_judge_costs.py --instant --users 20 --test 4 --methods default-judge,default-judge-cot,memory,demographics,synthesizeme

``--instant`` keeps the real model's tokenizer for every count but answers at
once (log-probs uniform, reasoning of exactly the cap in words): prompt tokens
are exact, completion tokens are the cap, seconds are harness time only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from typing import Any

from personalrewardbench.data.schema import Benchmark
from personalrewardbench.data.synthetic import sample_benchmark
from personalrewardbench.evaluate import make_queries
from personalrewardbench.llm import ScriptedLLM, make_llm
from personalrewardbench.methods import MethodEnv, MethodError, load_method

DEFAULT_METHODS = "default-judge,default-judge-cot,memory,demographics"
EXAMPLE_PROFILE = {
    "age": "25-34 years old", "gender": "Female", "employment_status": "Working full-time",
    "education": "University Bachelors Degree", "marital_status": "Never been married",
    "english_proficiency": "Native speaker", "religion": {"simplified": "No religion"},
    "ethnicity": {"simplified": "White"}, "location": {"birth_country": "Chile", "reside_country": "Chile"},
    "lm_familiarity": "Somewhat familiar", "lm_frequency_use": "Every week",
    "stated_prefs": {"values": 70, "creativity": 40, "fluency": 85, "factuality": 95, "diversity": 30,
                     "safety": 60, "personalisation": 75, "helpfulness": 90},
    "self_description": "A nurse who reads a lot and likes short, practical answers.",
}
USAGE_FIELDS = ("calls", "cache_hits", "prompt_tokens", "completion_tokens", "seconds")


class InstantLLM(ScriptedLLM):
    """Answers at once, counts tokens with a real model's tokenizer."""

    def __init__(self, counter: Any) -> None:
        super().__init__(generate_fn=lambda chat, p: " ".join(["word"] * p.max_tokens), choice_fn=None,
                         identity=f"instant:{counter.identity}", context_length=counter.context_length)
        self._counter = counter

    def count_tokens(self, chat: Any) -> int:
        return self._counter.count_tokens(chat)


def _snapshot(llm: Any) -> dict[str, float]:
    return {f: float(getattr(llm.usage, f)) for f in USAGE_FIELDS}


def _delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: b[k] - a[k] for k in a}


def with_example_profiles(bench: Benchmark) -> Benchmark:
    return replace(bench, profiles={u: dict(EXAMPLE_PROFILE) for u in bench.user_ids()})


def measure(name: str, bench: Benchmark, llm: Any, seed: int) -> dict[str, Any]:
    method = load_method(name)
    if "profile" in method.capabilities:
        bench = with_example_profiles(bench)
    method.setup(MethodEnv(seed=seed, llm=llm, show_progress=False))
    histories = bench.histories()
    queries, _ = make_queries(sorted(bench.pairs_of("test"), key=lambda p: p.pair_id), seed)
    u0 = _snapshot(llm)
    t0 = time.perf_counter()
    method.fit(histories)
    t1 = time.perf_counter()
    u1 = _snapshot(llm)
    preds = method.predict(queries)
    t2 = time.perf_counter()
    fit, pred = _delta(u0, u1), _delta(u1, _snapshot(llm))
    n_users, n_j = len(histories), len(queries)
    return {
        "method": name, "users": n_users, "judgments": n_j,
        "failed": sum(p is None for p in preds),
        "fit_per_user": {"calls": fit["calls"] / n_users, "prompt_tokens": fit["prompt_tokens"] / n_users,
                         "completion_tokens": fit["completion_tokens"] / n_users, "seconds": (t1 - t0) / n_users},
        "predict_per_1000": {"calls": 1000 * pred["calls"] / n_j, "prompt_tokens": 1000 * pred["prompt_tokens"] / n_j,
                             "completion_tokens": 1000 * pred["completion_tokens"] / n_j,
                             "seconds": 1000 * (t2 - t1) / n_j},
    }


def _row(r: dict[str, Any]) -> str:
    f, p = r["fit_per_user"], r["predict_per_1000"]
    return (f"{r['method']:<22} {f['calls']:>9.1f} {f['prompt_tokens']:>11.0f} {f['completion_tokens']:>10.0f} "
            f"{f['seconds']:>8.2f} | {p['calls']:>9.0f} {p['prompt_tokens']:>12.0f} {p['completion_tokens']:>10.0f} "
            f"{p['seconds']:>9.1f} {r['failed']:>6}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated (default: {DEFAULT_METHODS})")
    ap.add_argument("--users", type=int, default=3)
    ap.add_argument("--train", type=int, nargs=2, default=(6, 10), metavar=("MIN", "MAX"))
    ap.add_argument("--val", type=int, default=2)
    ap.add_argument("--test", type=int, default=1, help="test pairs per user (each judged in both orders)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default=None, help="transformers model (default: the embedded SmolLM2)")
    ap.add_argument("--instant", action="store_true", help="real tokenizer, instant answers (prompt side only)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is faster on a busy machine)")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    bench = sample_benchmark(seed=args.seed, n_users=args.users, n_train=tuple(args.train), n_val=args.val,
                             n_test=args.test)
    model = make_llm("transformers", args.model, use_cache=False, progress=False)
    llm = InstantLLM(model) if args.instant else model
    print(f"LLM: {model.identity} (context {model.context_length}){' [instant answers]' if args.instant else ''}; "
          f"{args.users} users of the synthetic sample, {args.test} test pair(s) each; request cache off")
    print(f"{'method':<22} {'fit calls':>9} {'fit prompt':>11} {'fit compl':>10} {'fit s':>8} | "
          f"{'calls/1k':>9} {'prompt/1k':>12} {'compl/1k':>10} {'s/1k':>9} {'failed':>6}")
    print(f"{'':<22} {'(per user)':>41} | {'(predict, per 1,000 judgments)':>44}")
    rows = []
    for name in [m.strip() for m in args.methods.split(",") if m.strip()]:
        try:
            r = measure(name, bench, llm, args.seed)
        except MethodError as exc:
            print(f"{name:<22} skipped: {exc}")
            continue
        rows.append(r)
        print(_row(r), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"llm": model.identity, "instant": args.instant, "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
