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
    closest choice for a misspelt choice, the closest option for a misspelt option) and where the full help is, not argparse's usage block of
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
        message += self._misspelt_options(message)
        sys.stderr.write(f"{self.short_usage()}\n{self.prog}: error: {message}\nsee `{self.prog} --help` for "
                         "every option and examples\n")
        sys.exit(2)

    _argv: tuple[str, ...] = ()  # the arguments being parsed (for hints in errors of any sub-parser)

    def _misspelt_options(self, message: str) -> str:
        """``"; did you mean --methods?"`` for each ``--option`` given that this verb does not know and
        that is close to one it does (difflib), when the error is about unknown or missing arguments."""
        import difflib
        import re

        if m := re.match(r"unrecognized arguments: (.*)", message):
            tokens = m.group(1).split()
        elif message.startswith("the following arguments are required"):
            tokens = list(PrbParser._argv)
        else:
            return ""
        options = [o for o in self._option_string_actions if o.startswith("--")]
        hints = []
        for token in dict.fromkeys(t.split("=", 1)[0] for t in tokens if t.startswith("--")):
            close = difflib.get_close_matches(token, options, n=1, cutoff=0.6) if token not in options else []
            if close:
                hints.append((close[0], token))
        if not hints:
            return ""
        if len(hints) == 1 and m:
            return f"; did you mean {hints[0][0]}?"
        return "; did you mean " + ", ".join(f"{good} (for {bad})" for good, bad in hints) + "?"

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        import sys

        PrbParser._argv = tuple(sys.argv[1:] if args is None else args)
        from personalrewardbench.cli_options import drop_given_marker

        ns, extras = self.parse_known_args(args, namespace)
        drop_given_marker(ns)
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
