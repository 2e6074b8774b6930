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

    parser = argparse.ArgumentParser(
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except _user_error_types() as exc:
        print(f"prb: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("prb: interrupted; finished work is cached, rerun the same command to resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
