"""`prb submission validate|new|score`."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from personalrewardbench.submissions.limits import SandboxLimits
from personalrewardbench.submissions.spec import Submission, SubmissionError, validate_folder

DEFAULT_OUT = Path("results") / "submissions"


def add_sandbox_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by `prb submission score` and scripts/score_submissions.py."""
    g = parser.add_argument_group("sandbox")
    g.add_argument("--time-limit", type=float, default=3600.0, metavar="SECONDS",
                   help="wall-clock limit per method for the whole run, including the time the harness spends "
                        "answering its LLM requests (default 3600)")
    g.add_argument("--memory-limit", type=int, default=8192, metavar="MIB",
                   help="memory limit in MiB over all the adapter's processes and its temporary files "
                        "(default 8192)")
    g.add_argument("--tmp-limit", type=int, default=1024, metavar="MIB",
                   help="size of the adapter's private /tmp and of its /dev/shm, each (default 1024)")
    g.add_argument("--isolation", choices=("bwrap", "none"), default="bwrap",
                   help="bwrap (default): bubblewrap sandbox, refused with a clear message where it cannot run; "
                        "none: no isolation, only with --i-trust-this-code")
    g.add_argument("--i-trust-this-code", dest="trust_code", action="store_true",
                   help="confirm --isolation none: the adapter can read and write whatever your user can")
    g.add_argument("--allow-read", action="append", default=[], metavar="PATH",
                   help="extra host path the adapter may read (read-only), e.g. a model folder; repeatable")


def limits_from_args(args: argparse.Namespace) -> SandboxLimits:
    return SandboxLimits(time_s=args.time_limit, memory_mb=args.memory_limit, tmp_mb=args.tmp_limit,
                         isolation=args.isolation, trust_code=args.trust_code,
                         extra_read_only=tuple(args.allow_read))


def cmd_validate(args: argparse.Namespace) -> int:
    from personalrewardbench.submissions.folder_check import check_folder

    failed = 0
    for path in args.paths:
        notes: list[str] = []
        try:
            report = check_folder(path)
            notes = report.notes
            sub = report.submission_or_raise()
        except SubmissionError as exc:
            failed += 1
            print(f"FAIL {exc}")
        else:
            print(f"ok   {path}: {', '.join(sub.method_names())}")
        for note in notes:
            print(f"  note: {note}")
    return 1 if failed else 0


def cmd_new(args: argparse.Namespace) -> int:
    from personalrewardbench.submissions.template import write_template

    folder = write_template(args.name, args.dir, force=args.force)
    print(f"wrote {folder}/ (submission.toml, adapter.py, README.md)\n"
          f"next: edit adapter.py, then `prb submission score {folder} --dataset synthetic`")
    return 0


def check_baselines(names: list[str]) -> None:
    """Every ``--baseline`` names a baseline of this repository (``baselines/``: trusted code, run
    in-process), else one SubmissionError naming each bad name with the closest baselines; before
    anything is scored."""
    import difflib

    from personalrewardbench.methods import MethodError, _registry, resolve_method

    baselines = sorted(n for n, info in _registry()[0].items() if info.tier == "reproduced")
    problems = []
    for name in names:
        try:
            info = resolve_method(name)
        except MethodError:
            info = None
        if info is None or info.tier != "reproduced":
            close = difflib.get_close_matches(name, baselines, n=3, cutoff=0.5)
            hint = f"did you mean: {', '.join(close)}?" if close else f"the baselines are {', '.join(baselines)}"
            what = (f"unknown baseline {name!r}" if info is None else f"{name!r} is not a baseline of this "
                    "repository (only baselines/ methods run in-process, outside the sandbox)")
            problems.append(f"{what}; {hint}")
    if problems:
        raise SubmissionError("--baseline: " + "; ".join(problems) + " (nothing was scored)")


def check_method_names(sub: Submission, names: list[str]) -> list[str]:
    """The ``--method`` names in order, without repeats, each one of ``sub``'s method names (base or a
    variant's full name), else one SubmissionError naming every unknown name with the closest known one."""
    import difflib

    known = sub.method_names()
    problems = []
    for name in names:
        if name in known:
            continue
        full = f"{sub.name}-{name}"
        close = [full] if full in known else difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f"did you mean: {close[0]}?" if close else "pass one of its names"
        problems.append(f"unknown method {name!r} in submission {sub.name}; {hint}")
    if problems:
        raise SubmissionError("--method: " + "; ".join(problems) + f" (its methods: {', '.join(known)}; nothing "
                              "was scored)")
    return list(dict.fromkeys(names))


def check_score_options(args: argparse.Namespace, sub: Submission) -> list[str]:
    """Every argument mistake of `prb submission score` as one SubmissionError (exit 2) before any
    sandbox starts: unknown ``--method`` names, ``--baseline`` names that are not this repository's
    baselines, and an ``--out``, ``--baseline-results`` (with ``--baseline``) or cache folder inside the
    submission folder. Returns the method names to score (empty: all of them)."""
    from personalrewardbench.submissions.scoring import outside_problems

    names = check_method_names(sub, args.method)
    check_baselines(args.baseline)
    problems = outside_problems(sub.folder, {"--out": args.out or DEFAULT_OUT,
                                             "--baseline-results": args.baseline_results if args.baseline else None})
    if problems:
        raise SubmissionError("; ".join(problems) + " (nothing was scored)")
    return names


def cmd_score(args: argparse.Namespace) -> int:
    from personalrewardbench.data import load_benchmark
    from personalrewardbench.run_command import needs_llm
    from personalrewardbench.submissions.report import console_summary
    from personalrewardbench.submissions.scoring import compare_with_baselines, run_baselines, score_submission

    sub = validate_folder(args.path)
    names = check_score_options(args, sub)
    from personalrewardbench.seal import load_key

    load_key()  # every run is sealed: a key that cannot be made or read is named before anything runs
    benchmarks = [load_benchmark(spec) for spec in args.dataset]  # a bad --dataset is named before any scoring
    from personalrewardbench.evaluate import users_note

    for note in filter(None, (users_note(b, args.users) for b in benchmarks)):
        print(f"prb submission score: {note}", file=sys.stderr)
    llm = None
    if sub.requirements.llm or any(needs_llm(b) for b in args.baseline):
        from personalrewardbench.llm import llm_from_args

        llm = llm_from_args(args)
    outcomes, baseline_dirs = [], []
    out_root = Path(args.out) if args.out else DEFAULT_OUT
    try:
        for benchmark in benchmarks:
            res = score_submission(sub.folder, benchmark, out_root, names=names or None,
                                   limits=limits_from_args(args), llm=llm, seed=args.seed, n_users=args.users,
                                   resamples=args.bootstrap, show_progress=not args.quiet,
                                   command=shlex.join(["prb", *sys.argv[1:]]))
            if args.baseline:
                base = run_baselines(args.baseline, benchmark, args.baseline_results, llm=llm, seed=args.seed,
                                     n_users=args.users, resamples=args.bootstrap, show_progress=not args.quiet)
                baseline_dirs += [(name, benchmark.name, path) for name, path in sorted(base.items())]
                for o in res:
                    compare_with_baselines(o, base, resamples=args.bootstrap, seed=args.seed)
            outcomes += res
    finally:
        if llm is not None:
            llm.close()
    text = console_summary(outcomes, title=f"{sub.name}: sandboxed scores")
    if baseline_dirs:
        text += "\nBaseline runs (in-process):\n" + "".join(f"  {n} on {d}: {p}\n" for n, d, p in baseline_dirs)
    print(text, end="")
    return 1 if any(o.status in ("failed", "skipped") for o in outcomes) else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from personalrewardbench.cli_options import BOOTSTRAP_HELP, bootstrap_count, users_count
    from personalrewardbench.data.commands import DATASET_HELP

    p = subparsers.add_parser("submission", help="validate, create or score a method submission folder")
    sub = p.add_subparsers(dest="submission_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])

    v = sub.add_parser("validate", help="check submission.toml and the folder around it")
    v.add_argument("paths", nargs="+", metavar="PATH", help="submission folder(s)")
    v.set_defaults(func=cmd_validate)

    n = sub.add_parser("new", help="write a working template submission folder")
    n.add_argument("name", help="method name: lowercase letters, digits and '-'")
    n.add_argument("--dir", default="submissions", help="parent folder (default: submissions)")
    n.add_argument("--force", action="store_true", help="write into an existing non-empty folder")
    n.set_defaults(func=cmd_new)

    s = sub.add_parser("score", help="score a submission in the sandbox (only histories and label-free queries "
                                     "reach it)")
    s.add_argument("path", metavar="PATH", help="submission folder")
    s.add_argument("--dataset", action="append", default=None, metavar="NAME_OR_PATH",
                   help=DATASET_HELP + " (repeatable; default: synthetic)")
    s.add_argument("--method", action="append", default=[],
                   help="method name to score (the base name or a variant's full name; default: all)")
    s.add_argument("--users", type=users_count, default=None, metavar="N|all",
                   help="score a seeded sample of N users, or all of them (default: all)")
    s.add_argument("--seed", type=int, default=0,
                   help="seed for the user sample (--users), the method's own randomness (env.seed), the "
                        "bootstrap and the --baseline runs; part of the run id (default 0)")
    s.add_argument("--bootstrap", type=bootstrap_count, default=1000, help=BOOTSTRAP_HELP)
    s.add_argument("--out", default=None, help=f"results root, outside the submission folder (default: {DEFAULT_OUT})")
    s.add_argument("--baseline", action="append", default=[],
                   help="also run this baseline (trusted, in-process) and report the paired difference; repeatable")
    s.add_argument("--baseline-results", default="results", help="results root for baseline runs (default: results)")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    add_sandbox_arguments(s)
    try:
        from personalrewardbench.llm import add_llm_arguments

        add_llm_arguments(s)
    except ImportError:  # pragma: no cover - LLM package incomplete
        pass
    s.set_defaults(func=_score_with_default_dataset, folder_options=("out", "baseline_results"))


def _score_with_default_dataset(args: argparse.Namespace) -> int:
    args.dataset = args.dataset or ["synthetic"]
    return cmd_score(args)
