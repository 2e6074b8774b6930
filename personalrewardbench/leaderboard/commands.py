"""`prb leaderboard build`: render the static site from results folders."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEFAULT_OUT = Path("leaderboard/site")


def register(subparsers: argparse._SubParsersAction) -> None:
    lb = subparsers.add_parser("leaderboard", help="render the static leaderboard site")
    lb_sub = lb.add_subparsers(dest="leaderboard_command", metavar="SUBCOMMAND")
    b = lb_sub.add_parser(
        "build",
        help="build the static site from results folders",
        description="Render leaderboard/site/ (HTML tables, plots, CSV/JSON/Markdown exports) from results "
        "folders (default: results/ and submissions/*/results/) and the reported rows. Only runs sealed with this "
        "machine's seal key ($PRB_SEAL_KEY, else the cache's seal.key) whose figures verify against their benchmark "
        "become rows; every other folder is excluded and named, here and on the page.",
    )
    b.add_argument("--results", action="append", type=Path, metavar="DIR",
                   help="a results folder to read (repeatable); default: results/ and submissions/*/results/")
    b.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help=f"output folder, outside every --results folder (default: {DEFAULT_OUT}, the repository's "
                   "tracked site; --out my-site for a private build)")
    b.add_argument("--no-reported", action="store_true", help="leave out the numbers quoted from papers")
    b.add_argument("--no-plots", action="store_true", help="leave out the figures (quick preview of the tables)")
    b.add_argument("--repo-url", default=os.environ.get("PRB_REPO_URL"),
                   help="https URL of the repository, for links to submission folders (default: $PRB_REPO_URL)")
    b.set_defaults(func=build_command, folder_options=("out",))
    lb.set_defaults(func=lambda args: (lb.print_help(), 2)[1])


def build_command(args: argparse.Namespace) -> int:
    from personalrewardbench.cli import UserError
    from personalrewardbench.leaderboard.build import SiteError, build_site
    from personalrewardbench.leaderboard.verification import default_results_dirs

    dirs = args.results or default_results_dirs(Path.cwd())
    missing = [d for d in dirs if not os.path.lexists(d)]
    if missing:
        from personalrewardbench.results import unmatched_pattern

        raise UserError(unmatched_pattern(missing[0]) or f"results folder not found: {missing[0]}; pass an existing "
                        "folder to --results")
    try:
        report = build_site(dirs, args.out, include_reported=not args.no_reported, repo_url=args.repo_url,
                            plots=not args.no_plots)
    except SiteError as exc:
        raise UserError(str(exc)) from exc
    print_build_report(report)
    if is_tracked_site(Path(args.out)):
        print(f"leaderboard: wrote the repository's tracked site {DEFAULT_OUT}/ (`git status` shows what changed); "
              "pass --out DIR for a private build (e.g. --out my-site)")
    else:
        print(f"leaderboard: wrote the site into {Path(args.out).resolve()}/")
    return 0


def is_tracked_site(out: Path) -> bool:
    """Whether ``out`` is the repository's tracked site: its marker file ``.prb-site`` is tracked by
    git there (``git ls-files``), or, without git, ``out`` is ``leaderboard/site`` of the checkout this
    package was installed from (editable install). Anywhere else it is a private folder."""
    import subprocess

    from personalrewardbench.run_folders import SITE_MARKER

    out = Path(out).resolve()
    if not out.is_dir():
        return False
    try:
        found = subprocess.run(["git", "ls-files", "--error-unmatch", "--", SITE_MARKER], cwd=out,
                               capture_output=True, timeout=20, check=False)
        return found.returncode == 0
    except (OSError, subprocess.SubprocessError):  # no git: compare with the package's own checkout
        import personalrewardbench

        checkout = Path(personalrewardbench.__file__).resolve().parents[1]
        return (checkout / ".git").exists() and out == (checkout / DEFAULT_OUT).resolve()


def print_build_report(report) -> None:  # noqa: ANN001 - BuildReport, imported lazily
    for s in report.skipped:
        print(f"excluded {s.path}: {s.reason}", file=sys.stderr)
    from personalrewardbench.cli_options import plural

    runs = [r for r in report.runs if r.tier != "reported"]
    published = len(report.runs) - len(runs)
    n_ds = len({r.dataset for r in runs})
    print(f"leaderboard: {plural(len(runs), 'run')} over {plural(n_ds, 'dataset')} + "
          f"{plural(published, 'published number')} quoted from papers; "
          f"{plural(len(report.skipped), 'results folder')} excluded"
          + (" (listed above and on the page)" if report.skipped else ""))
    print(f"site: {report.index.resolve().as_uri()}")
