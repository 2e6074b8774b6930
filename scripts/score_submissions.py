#!/usr/bin/env python3
"""CI entry point: score the submissions a pull request changes, in the sandbox, with this checkout's harness.

    python scripts/score_submissions.py --repo PR_CHECKOUT --base BASE_SHA --out ci-results --summary out.md
    python scripts/score_submissions.py submissions/my-method          # explicit folders

The harness that runs is the one this script belongs to (in CI: the base branch, installed
from its own checkout); the pull request's checkout (``--repo``) is only data. Its changes
against the merge base with ``--base`` must all lie inside ``submissions/<name>/`` folders
(``results/`` inside them excepted: results are never taken from a pull request). A pull
request that changes anything else is reported and nothing is scored. Each changed
submission is validated (its method names must be new: never a baseline's, which the
harness runs in-process, nor another submission's), and every method name (base and
variants) is scored in the sandbox on each ``--dataset``, through a read-only snapshot of
its folder, into ``--out`` (outside the pull request's folders), each within its fair share
of ``--job-time-limit``. The synthetic sample is drawn with a secret seed for the job. The baselines that need no LLM, reward model or GPU
run in-process (trusted, reused when complete) on the same users for paired differences.
One submission's failure (invalid folder, crash, hang, memory, bad predictions, broken
protocol, or an internal error) never stops the others, and the job always ends with the
Markdown report (printed, and written to ``--summary``). Exit status 1 if anything failed
or the pull request changes files outside its submission folders, 0 otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import shlex
import subprocess
import sys
import time
import traceback
from pathlib import Path, PurePosixPath
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SUBMISSIONS = "submissions"


def changed_paths(base: str, repo: Path) -> list[str]:
    """Every path added, changed, renamed (both names) or deleted since the merge base with ``base``."""
    from personalrewardbench.cli import UserError

    try:
        out = subprocess.run(["git", "-c", "core.quotePath=false", "diff", "--name-only", "--no-renames", "-z",
                              f"{base}...HEAD"], cwd=repo, capture_output=True, text=True, check=True).stdout
    except (subprocess.CalledProcessError, OSError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise UserError(f"git diff against {base!r} in {repo} failed ({str(detail).strip()[:300]}); fetch the base "
                        "commit (actions/checkout with fetch-depth: 0) or pass --base with an existing ref") from None
    return sorted(p for p in out.split("\0") if p)


def existing_submissions(base: str, repo: Path) -> set[str]:
    """Names of the submission folders on ``base`` (empty when git cannot list them)."""
    out = subprocess.run(["git", "-c", "core.quotePath=false", "ls-tree", "-d", "--name-only", "-z",
                          f"{base}:{SUBMISSIONS}"], cwd=repo, capture_output=True, text=True)
    return {n for n in out.stdout.split("\0") if n} if out.returncode == 0 else set()


def split_changes(paths: list[str]) -> tuple[list[str], list[str]]:
    """(submission names the paths touch, paths a pull request may not change).

    Allowed: ``submissions/<name>/<anything>`` except ``submissions/<name>/results/...``.
    """
    names: set[str] = set()
    outside: list[str] = []
    for path in paths:
        parts = PurePosixPath(path).parts
        if len(parts) >= 3 and parts[0] == SUBMISSIONS and parts[2] != "results" and ".." not in parts:
            names.add(parts[1])
        else:
            outside.append(path)
    return sorted(names), outside


def default_baselines(baselines_dir: Path) -> list[str]:
    """Baselines that need neither an LLM, a reward model nor a GPU (cheap enough for every PR)."""
    from personalrewardbench.submissions.spec import SubmissionError, read_submission

    names = []
    for folder in sorted(baselines_dir.iterdir()) if baselines_dir.is_dir() else []:
        try:
            sub = read_submission(folder)
        except SubmissionError:
            continue
        r = sub.requirements
        if not (r.llm or r.reward_model or r.gpu):
            names.append(sub.name)
    return names


def benchmark_for(spec: str, notes: list[str]) -> Any:
    """The benchmark ``spec`` names; the synthetic sample is drawn with a secret seed for this job, since the
    package ships its generator (with the public seed a method could regenerate every label)."""
    from personalrewardbench.data import load_benchmark
    from personalrewardbench.data.loader import SYNTHETIC_NAMES

    if spec in SYNTHETIC_NAMES and not Path(spec).exists():
        from personalrewardbench.data.synthetic import sample_benchmark

        notes.append(f"{spec}: drawn with a secret seed for this job (the package's public sample can be "
                     "regenerated by any method); it is a smoke test, not a held-out benchmark")
        return sample_benchmark(seed=secrets.randbits(62))
    return load_benchmark(spec)


def build_parser() -> argparse.ArgumentParser:
    from personalrewardbench.submissions.commands import add_sandbox_arguments

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="*", help="submission folders to score (default: those changed since --base)")
    p.add_argument("--repo", default=str(ROOT), help="checkout holding the changes (in CI: the pull request's)")
    p.add_argument("--base", default="origin/main", help="git ref to diff against (default: origin/main)")
    p.add_argument("--baselines-dir", default=str(ROOT / "baselines"),
                   help="baselines to compare with, and the names a submission may not take (default: this "
                        "checkout's; with this checkout's submissions/ they are the method registry of the run)")
    p.add_argument("--job-time-limit", type=float, default=9000.0, metavar="SECONDS",
                   help="wall clock for the whole job (default 9000, under the workflow's 180 minutes): each "
                        "method name gets at most its fair share of what is left, so every name is scored")
    p.add_argument("--dataset", action="append", default=None,
                   help="benchmark(s) to score on: synthetic, chatbot_arena, prism or a path (default: synthetic)")
    p.add_argument("--baseline", action="append", default=None,
                   help="baselines to compare with (default: every baseline needing no LLM/RM/GPU)")
    p.add_argument("--out", default=str(ROOT / "results" / "submissions"),
                   help="results root for the submissions' runs (never inside a submission folder)")
    p.add_argument("--baseline-results", default=str(ROOT / "results"), help="results root for baseline runs")
    from personalrewardbench.cli_options import BOOTSTRAP_HELP, bootstrap_count, users_count

    p.add_argument("--users", type=users_count, default=None, metavar="N|all",
                   help="score a seeded sample of N users, or all of them (default: all)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed for the user sample (--users), the methods' own randomness (env.seed) and the "
                        "bootstrap (default 0; the synthetic sample itself is drawn with a secret seed)")
    p.add_argument("--bootstrap", type=bootstrap_count, default=1000, help=BOOTSTRAP_HELP)
    p.add_argument("--summary", default=None, help="also write the Markdown report to this file")
    p.add_argument("--list-changed", action="store_true", help="only print the changed submission folders")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_sandbox_arguments(p)
    from personalrewardbench.llm import add_llm_arguments

    add_llm_arguments(p)
    return p


def _failed(name: str, dataset: str, error: str, kind: str) -> Any:
    from personalrewardbench.submissions.scoring import ScoreOutcome

    return ScoreOutcome(method=name, dataset=dataset, status="failed", error=error, kind=kind)


def score_all(args: argparse.Namespace, folders: list[Path], notes: list[str], outcomes: list[Any],
              command: str, job_deadline: float = float("inf")) -> None:
    """Validate and score ``folders``, appending to ``outcomes``/``notes``; never raises for one submission."""
    from personalrewardbench.submissions.commands import limits_from_args
    from personalrewardbench.submissions.scoring import compare_with_baselines, run_baselines, score_submission
    from personalrewardbench.submissions.spec import SubmissionError, validate_folder

    valid = []
    for folder in folders:
        try:
            sub = validate_folder(folder)
        except SubmissionError as exc:
            outcomes.append(_failed(folder.name, "-", str(exc), "invalid"))
            continue
        valid.append(sub)
    if not valid:
        return
    from personalrewardbench.seal import load_key

    load_key()  # no usable seal key ($PRB_SEAL_KEY empty, or required and unset): stop before anything runs
    llm = None
    try:
        if any(s.requirements.llm for s in valid):
            from personalrewardbench.llm import llm_from_args

            llm = llm_from_args(args)
        baselines = args.baseline if args.baseline is not None else default_baselines(Path(args.baselines_dir))
        datasets = args.dataset or ["synthetic"]
        names_left = len(datasets) * sum(len(s.method_names()) for s in valid)
        for spec in datasets:
            try:
                bench = benchmark_for(spec, notes)
            except Exception as exc:  # noqa: BLE001 - reported; other datasets still run
                notes.append(f"dataset {spec}: could not be loaded: {exc}")
                continue
            try:
                base_runs = run_baselines(baselines, bench, args.baseline_results, llm=llm, seed=args.seed,
                                          n_users=args.users, resamples=args.bootstrap, show_progress=not args.quiet)
            except Exception as exc:  # noqa: BLE001 - submissions are still scored, without comparisons
                notes.append(f"baselines on {bench.name} failed ({type(exc).__name__}: {exc}); scores are shown "
                             "without paired differences")
                base_runs = {}
            for sub in valid:
                share = max(0.0, job_deadline - time.monotonic()) / max(1, names_left)
                names_left -= len(sub.method_names())
                limits = dataclasses.replace(limits_from_args(args), time_s=min(args.time_limit, share))
                if limits.time_s < args.time_limit:
                    notes.append(f"{sub.name} on {bench.name}: {limits.time_s:.0f} s per method name (its fair "
                                 "share of the job's time left), not the full --time-limit")
                try:
                    res = score_submission(sub.folder, bench, args.out, limits=limits, llm=llm,
                                           seed=args.seed, n_users=args.users, resamples=args.bootstrap,
                                           show_progress=not args.quiet, command=command)
                    for o in res:
                        compare_with_baselines(o, base_runs, resamples=args.bootstrap, seed=args.seed)
                except Exception as exc:  # noqa: BLE001 - one submission never stops the others
                    res = [_failed(sub.name, bench.name, f"internal error: {type(exc).__name__}: {exc}",
                                   "internal")]
                outcomes += res
    finally:
        if llm is not None:
            llm.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    job_deadline = time.monotonic() + args.job_time_limit
    # the method registry of this run: the baselines given and this checkout's submissions, wherever the
    # harness is installed (an installed package has no baselines/ next to it)
    from personalrewardbench.methods import METHOD_DIRS_ENV

    saved_dirs = os.environ.get(METHOD_DIRS_ENV)
    os.environ[METHOD_DIRS_ENV] = os.pathsep.join([str(Path(args.baselines_dir).resolve()),
                                                   str(ROOT / SUBMISSIONS)])
    repo = Path(args.repo).resolve()
    notes: list[str] = []
    outcomes: list[Any] = []
    failed = False
    command = shlex.join(["python", "scripts/score_submissions.py", *(argv if argv is not None else sys.argv[1:])])
    try:
        if args.paths:
            folders = [Path(p).resolve() for p in args.paths]
        else:
            names, outside = split_changes(changed_paths(args.base, repo))
            if outside:
                failed = True
                shown = "\n".join(f"  {p}" for p in outside[:50]) + (f"\n  ... and {len(outside) - 50} more"
                                                                   if len(outside) > 50 else "")
                notes.append("Not scored: this pull request changes files outside submissions/<name>/ (a submission "
                             "may change only its own folder, and never its results/). Move these changes to a "
                             f"separate pull request:\n{shown}")
                names = []
            changed_existing = sorted(set(names) & existing_submissions(args.base, repo))
            if changed_existing:
                notes.append("This pull request changes submissions that already exist on the base branch: "
                             f"{', '.join(changed_existing)}. Maintainers: check that its author may change them "
                             "(they are scored as changed).")
            folders = [repo / SUBMISSIONS / n for n in names if (repo / SUBMISSIONS / n).is_dir()]
            gone = [n for n in names if not (repo / SUBMISSIONS / n).is_dir()]
            if gone:
                notes.append(f"Removed submission folders (nothing to score): {', '.join(gone)}")
        if args.list_changed:
            print("\n".join(str(f) for f in folders))
            return 1 if failed else 0
        score_all(args, folders, notes, outcomes, command, job_deadline)
    except Exception as exc:  # noqa: BLE001 - the job always ends with a summary
        failed = True
        notes.append(f"The scoring job stopped early: {type(exc).__name__}: {exc}\n"
                     + "".join(traceback.format_exception(exc)[-3:]))
    finally:
        if saved_dirs is None:
            os.environ.pop(METHOD_DIRS_ENV, None)
        else:
            os.environ[METHOD_DIRS_ENV] = saved_dirs
        if not args.list_changed:
            from personalrewardbench.submissions.report import markdown_summary

            title = "PersonalRewardBench: sandboxed scores of the changed submissions"
            print(markdown_summary(outcomes, title=title, notes=notes, max_chars=None))  # the job log: all of it
            if args.summary:  # the pull-request comment and job summary: within GitHub's comment limit
                Path(args.summary).write_text(markdown_summary(outcomes, title=title, notes=notes), encoding="utf-8")
    return 1 if failed or any(o.status == "failed" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
