"""Descriptions and examples for `prb` verbs whose modules do not set their own.

:func:`add_help` walks the parser tree after every command group registered itself and
fills in a missing description (from the verb's one-line help) and a missing examples
epilog from :data:`EXAMPLES`, so every ``prb ... --help`` shows both.
"""

from __future__ import annotations

import argparse

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
