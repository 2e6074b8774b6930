#!/usr/bin/env python3
"""CI entry point: score the submissions a pull request changes, in the sandbox.

    python scripts/score_submissions.py --base origin/main [--dataset synthetic] [--summary out.md]
    python scripts/score_submissions.py submissions/my-method          # explicit folders

Finds the folders under ``submissions/`` whose files differ from the merge base
with ``--base`` (changes only under a folder's ``results/`` are ignored: CI
writes those), validates each, scores every method name (base and variants) in
the sandbox on each ``--dataset``, writes ``submissions/<name>/results/``, runs
the baselines (trusted, in-process, reused when already complete) on the same
users, and prints a Markdown report with each paired difference and its 95% CI,
ready to post on the pull request. Exit status 1 if any submission is invalid
or failed (crash, hang, memory, bad predictions), 0 otherwise.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from personalrewardbench.cli import UserError
from personalrewardbench.data.errors import DataError
from personalrewardbench.methods import MethodError
from personalrewardbench.submissions.spec import SUBMISSION_FILE, SubmissionError, read_submission, validate_folder
from personalrewardbench.submission_commands import add_sandbox_arguments, limits_from_args
from personalrewardbench.submissions.scoring import (
    ScoreOutcome,
    compare_with_baselines,
    markdown_summary,
    run_baselines,
    score_submission,
)

ROOT = Path(__file__).resolve().parents[1]


def changed_submissions(base: str, submissions_dir: Path, repo: Path) -> list[Path]:
    """Submission folders with files added/changed/renamed since the merge base with ``base``."""
    try:
        out = subprocess.run(["git", "diff", "--name-only", "--diff-filter=ACMR", f"{base}...HEAD", "--",
                              str(submissions_dir.relative_to(repo))], cwd=repo, capture_output=True, text=True,
                             check=True).stdout
    except subprocess.CalledProcessError as exc:
        raise UserError(f"git diff against {base!r} failed ({exc.stderr.strip()}); fetch the base branch "
                        "(actions/checkout with fetch-depth: 0) or pass --base with an existing ref") from None
    names: set[str] = set()
    prefix = submissions_dir.relative_to(repo).parts
    for line in out.splitlines():
        parts = Path(line).parts[len(prefix):]
        if len(parts) >= 2 and parts[1] != "results":
            names.add(parts[0])
    return [submissions_dir / n for n in sorted(names) if (submissions_dir / n / SUBMISSION_FILE).is_file()
            or (submissions_dir / n).is_dir()]


def default_baselines(baselines_dir: Path) -> list[str]:
    """Baselines that need neither an LLM, a reward model nor a GPU (cheap enough for every PR)."""
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="*", help="submission folders to score (default: those changed since --base)")
    p.add_argument("--base", default="origin/main", help="git ref to diff against (default: origin/main)")
    p.add_argument("--submissions-dir", default=str(ROOT / "submissions"))
    p.add_argument("--baselines-dir", default=str(ROOT / "baselines"))
    p.add_argument("--dataset", action="append", default=None,
                   help="benchmark(s) to score on: synthetic, chatbot_arena, prism or a path (default: synthetic)")
    p.add_argument("--baseline", action="append", default=None,
                   help="baselines to compare with (default: every baseline needing no LLM/RM/GPU)")
    p.add_argument("--baseline-results", default=str(ROOT / "results"), help="results root for baseline runs")
    p.add_argument("--users", type=int, default=None, help="score only this many users (seeded selection)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--summary", default=None, help="also write the Markdown report to this file")
    p.add_argument("--list-changed", action="store_true", help="only print the changed submission folders")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_sandbox_arguments(p)
    from personalrewardbench.llm import add_llm_arguments

    add_llm_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    subs_dir = Path(args.submissions_dir).resolve()
    repo = Path(subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=subs_dir.parent, capture_output=True,
                               text=True).stdout.strip() or subs_dir.parent)
    folders = [Path(p).resolve() for p in args.paths] or changed_submissions(args.base, subs_dir, repo.resolve())
    if args.list_changed:
        print("\n".join(str(f) for f in folders))
        return 0
    outcomes: list[ScoreOutcome] = []
    valid = []
    for folder in folders:
        try:
            valid.append(validate_folder(folder))
        except SubmissionError as exc:
            outcomes.append(ScoreOutcome(method=folder.name, dataset="-", status="failed", error=str(exc),
                                         kind="invalid"))
    llm = None
    if any(s.requirements.llm for s in valid):
        from personalrewardbench.llm import llm_from_args

        llm = llm_from_args(args)
    baselines = args.baseline if args.baseline is not None else default_baselines(Path(args.baselines_dir))
    command = shlex.join(["python", "scripts/score_submissions.py", *(argv if argv is not None else sys.argv[1:])])
    try:
        from personalrewardbench.data import load_benchmark

        for spec in args.dataset or ["synthetic"]:
            if not valid:
                break
            bench = load_benchmark(spec)
            base_runs = run_baselines(baselines, bench, args.baseline_results, llm=llm, seed=args.seed,
                                      n_users=args.users, resamples=args.bootstrap, show_progress=not args.quiet)
            for sub in valid:
                res = score_submission(sub.folder, bench, sub.folder / "results", limits=limits_from_args(args),
                                       llm=llm, seed=args.seed, n_users=args.users, resamples=args.bootstrap,
                                       show_progress=not args.quiet, command=command)
                for o in res:
                    compare_with_baselines(o, base_runs, resamples=args.bootstrap, seed=args.seed)
                outcomes += res
    finally:
        if llm is not None:
            llm.close()
    report = markdown_summary(outcomes, title="PersonalRewardBench: sandboxed scores of the changed submissions")
    print(report)
    if args.summary:
        Path(args.summary).write_text(report, encoding="utf-8")
    return 1 if any(o.status == "failed" for o in outcomes) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (UserError, MethodError, DataError) as exc:  # user-fixable: one line, no traceback
        print(f"score_submissions: error: {exc}", file=sys.stderr)
        sys.exit(2)
