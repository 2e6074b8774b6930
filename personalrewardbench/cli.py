"""`prb`: the command line. A thin dispatcher.

Each command group lives next to the code it drives and exposes
``register(subparsers)``; it adds its parser(s) and sets ``func`` on them
(``func(args) -> int`` exit code). Errors a user can cause are raised as
:class:`UserError` (or a subclass, e.g. LLMError/MethodError/DataError) and
printed as one line, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# module path -> registers these top-level commands
COMMAND_MODULES = (
    "personalrewardbench.data.commands",  # prb data build|stats|validate|export
    "personalrewardbench.evaluate_commands",  # prb evaluate|merge|compare|verify
    "personalrewardbench.submissions.commands",  # prb submission validate|new|score
    "personalrewardbench.leaderboard.commands",  # prb leaderboard build
    "personalrewardbench.run_command",  # prb run
)


class UserError(RuntimeError):
    """An error the user can fix; its message says what and how."""


def _user_error_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [UserError]
    for mod, name in (
        ("personalrewardbench.llm.base", "LLMError"),
        ("personalrewardbench.methods", "MethodError"),
        ("personalrewardbench.data.errors", "DataError"),
    ):
        try:
            types.append(getattr(importlib.import_module(mod), name))
        except (ImportError, AttributeError):
            pass
    return tuple(types)


def build_parser() -> argparse.ArgumentParser:
    from personalrewardbench import __version__
    from personalrewardbench.cli_help import PrbParser

    parser = PrbParser(
        prog="prb",
        description="PersonalRewardBench: build benchmarks, evaluate methods, render the leaderboard.",
    )
    parser.add_argument("--version", action="version", version=f"prb {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod_name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as exc:
            if exc.name == mod_name:  # command group not built yet
                continue
            raise
        mod.register(sub)
    from personalrewardbench.cli_help import add_help

    add_help(parser)
    from personalrewardbench.cli_options import refuse_repeats

    refuse_repeats(parser)
    return parser


def _unexpected(exc: BaseException) -> str:
    """One line for an error no check caught: what happened, and how to see more."""
    if isinstance(exc, OSError) and exc.filename:  # a file the user named or a folder prb writes
        what = f"{exc.strerror or type(exc).__name__}: {exc.filename}"
        return f"prb: error: {what}; check the path and its permissions (PRB_DEBUG=1 shows the traceback)"
    if isinstance(exc, MemoryError):
        return ("prb: error: out of memory; use fewer users (--users N), a smaller --llm-batch-size or "
                "--max-model-len, or a machine with more memory")
    text = (str(exc).strip().splitlines() or [""])[0][:300]
    return (f"prb: error: unexpected {type(exc).__name__}{': ' + text if text else ''}\n"
            "prb: this is a bug or an input prb does not check yet; rerun with PRB_DEBUG=1 for the traceback "
            "and report it with the command you ran")


def _stderr_is_terminal() -> bool:
    """Whether stderr (where progress bars go) is a terminal; a pipe or a log file is not."""
    try:
        return bool(sys.stderr and sys.stderr.isatty())
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `prb` command; returns its exit status.

    0 success; 1 a command's own failure (a method failed, a verification mismatch, an
    unexpected error); 2 a user error (one ``prb: error:`` line naming the thing and the fix);
    130 interrupted. ``PRB_DEBUG=1`` re-raises unexpected errors with their traceback.
    When stderr is not a terminal (a pipe, a log file) a verb with ``--quiet`` runs as if given it:
    no progress bars, its own or its libraries', to garble the log.
    """
    from personalrewardbench.threads import prepare_environment

    prepare_environment()  # before torch/OpenMP load: thread count from the usable CPUs, idle threads sleep
    debug = os.environ.get("PRB_DEBUG", "") not in ("", "0")
    saved_env = {k: os.environ.get(k) for k in ("PRB_CACHE_DIR", "HF_HUB_DISABLE_PROGRESS_BARS",
                                                 "TRANSFORMERS_VERBOSITY")}
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        from personalrewardbench.cli_options import apply_cache_dir, check_folder_options
        from personalrewardbench.threads import configure_threads

        check_folder_options(args)
        apply_cache_dir(args)
        if hasattr(args, "quiet") and not _stderr_is_terminal():  # piped or logged: bars would garble it
            args.quiet = True
        if getattr(args, "quiet", False):
            from personalrewardbench.cli_options import quiet_libraries

            quiet_libraries()
        try:
            configure_threads(getattr(args, "threads", None))
        except ValueError as exc:
            raise UserError(str(exc)) from None
        return int(args.func(args) or 0)
    except _user_error_types() as exc:
        if debug:
            raise
        print(f"prb: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("prb: interrupted; finished work is cached, rerun the same command to resume.", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last guard: one line, never a traceback
        if debug:
            raise
        print(_unexpected(exc), file=sys.stderr)
        return 2 if isinstance(exc, OSError | MemoryError) else 1
    finally:  # --cache-dir and --quiet set these for this command only (main() may be called in-process)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
