"""Descriptions and examples for `prb` verbs whose modules do not set their own.

:func:`add_help` walks the parser tree after every command group registered itself and
fills in a missing description (from the verb's one-line help) and a missing examples
epilog from :data:`EXAMPLES`, so every ``prb ... --help`` shows both.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import NoReturn

EXAMPLES: dict[tuple[str, ...], str] = {
    ("data",): """examples:
  prb data stats --dataset synthetic
  prb data validate --dataset path/to/pairs.jsonl
  prb data build --source summarize_feedback --input ../shared/data/summarize-from-feedback --out tldr-built
""",
    ("data", "build"): """examples:
  prb data build --source summarize_feedback --input ../shared/data/summarize-from-feedback --out tldr-built
  prb data build --source prism_raw --input prism-alignment/ --out prism-raw-built --prism-turns first
  prb data build --source chatbot_arena_raw --input arena/ --out arena-built --language English --no-cache
""",
    ("data", "stats"): """examples:
  prb data stats --dataset synthetic
  prb data stats --dataset prism --dataset chatbot_arena --json
  prb data stats --dataset tldr-built
""",
    ("data", "validate"): """examples:
  prb data validate --dataset path/to/pairs.jsonl
  prb data validate --dataset prism_personalized_0125 --survey prism-alignment/survey.jsonl
""",
    ("data", "audit"): """examples:
  prb data audit --dataset ../shared/data/summarize-from-feedback
  prb data audit --dataset prism_raw-built --per-user --out prism-audit.json
""",
    ("data", "export"): """examples:
  prb data export --dataset synthetic --out synthetic-built
  prb data export --dataset tldr-built --out tldr.parquet --format parquet
""",
    ("leaderboard",): """examples:
  prb leaderboard build
""",
    ("leaderboard", "build"): """examples:
  prb leaderboard build                                   # results/, submissions/*/results/ -> leaderboard/site/
  prb leaderboard build --results prb-output/results --out my-site
  prb leaderboard build --no-plots --no-reported          # a quick preview of the tables
""",
    ("submission",): """examples:
  prb submission new my-method
  prb submission validate submissions/my-method
  prb submission score submissions/my-method --dataset synthetic
""",
    ("submission", "validate"): """examples:
  prb submission validate submissions/my-method
  prb submission validate submissions/*
""",
    ("submission", "new"): """examples:
  prb submission new my-method
  prb submission new my-method --dir elsewhere/
""",
    ("submission", "score"): """examples:
  prb submission score submissions/my-method --dataset synthetic
  prb submission score submissions/my-method --dataset prism --users 50 --time-limit 600 --allow-read ~/models
""",
}


def _children(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps sub-parsers only here
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _helps(parser: argparse.ArgumentParser) -> dict[str, str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {a.dest: a.help or "" for a in action._choices_actions}
    return {}


def add_help(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> None:
    """Give every sub-command a description and an examples epilog where its module set none."""
    from personalrewardbench.cli_options import HelpFormatter

    helps = _helps(parser)
    for name, child in _children(parser).items():
        here = (*path, name)
        if not child.description and helps.get(name):
            child.description = helps[name][0].upper() + helps[name][1:] + "."
        if not child.epilog and here in EXAMPLES:
            child.epilog = EXAMPLES[here]
        if child.formatter_class is argparse.HelpFormatter:
            child.formatter_class = HelpFormatter
        add_help(child, here)


class PrbParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are short: the verb's one-line usage, the error (with the
    closest choice for a misspelt one) and where the full help is, not argparse's usage block of
    every option. Unrecognized arguments are reported by the verb they were given to."""

    def short_usage(self) -> str:
        """``usage: prb VERB [options] POSITIONALS``: one line, whatever the number of options."""
        positionals = []
        for action in self._actions:
            if action.option_strings:
                continue
            if isinstance(action, argparse._SubParsersAction):
                positionals.append("{" + ",".join(action.choices) + "} ...")
            else:
                name = action.metavar or action.dest
                positionals.append(f"[{name} ...]" if action.nargs in ("*", "?") else
                                   f"{name} [{name} ...]" if action.nargs == "+" else str(name))
        return " ".join(["usage:", self.prog, "[options]", *positionals])

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        import difflib
        import re
        import sys

        bad = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if bad:
            choices = re.findall(r"'([^']*)'", bad.group(2))
            close = difflib.get_close_matches(bad.group(1), choices, n=3, cutoff=0.5)
            if close:
                message += f"; did you mean: {', '.join(close)}?"
        sys.stderr.write(f"{self.short_usage()}\n{self.prog}: error: {message}\nsee `{self.prog} --help` for "
                         "every option and examples\n")
        sys.exit(2)

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            self._chosen(ns).error(f"unrecognized arguments: {' '.join(extras)}")
        return ns

    def _chosen(self, ns: argparse.Namespace) -> PrbParser:
        """The deepest sub-command parser ``ns`` was parsed with (self when none)."""
        parser: argparse.ArgumentParser = self
        while True:
            action = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
            name = getattr(ns, action.dest, None) if action is not None and action.dest != argparse.SUPPRESS else None
            if action is None or name not in action.choices:
                return parser if isinstance(parser, PrbParser) else self
            parser = action.choices[name]
