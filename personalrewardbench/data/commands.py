"""`prb data build|stats|validate|export|audit`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from personalrewardbench.data.errors import DataError

BUILD_KEY_FILE = "build-key.txt"  # hash of the inputs + settings that produced a built folder

DATASET_HELP = ("dataset name (chatbot_arena, prism: the published benchmark on the HF hub; synthetic or "
                "synthetic-sample: the generated sample; chatbot_arena_raw, prism_raw, summarize_feedback: built from the hub) or a local path: a "
                "built folder (manifest.json), a jsonl/parquet file or hub-repo copy (data/*.parquet) in the "
                "published schema, or raw source files")


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected three numbers like 0.23,0.17,0.60, got {text!r}") from exc
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected three numbers (train,val,test), got {text!r}")
    return parts  # type: ignore[return-value]


def _add_dataset_args(p: argparse.ArgumentParser, many: bool = False) -> None:
    if many:
        p.add_argument("--dataset", required=True, action="append", metavar="NAME_OR_PATH",
                       help=DATASET_HELP + " (repeat to list several)")
    else:
        p.add_argument("--dataset", required=True, metavar="NAME_OR_PATH", help=DATASET_HELP)
    p.add_argument("--revision", default=None, help="hub revision (commit sha) of the published dataset to load")
    p.add_argument("--survey", default=None, metavar="PATH",
                   help="PRISM survey (survey.jsonl/parquet or a prism-alignment copy) joined on user_id for profiles")
    _add_cache_args(p)


def _add_cache_args(p: argparse.ArgumentParser) -> None:
    from personalrewardbench.cli_options import CACHE_DIR_HELP

    p.add_argument("--cache-dir", default=None, metavar="DIR", help=CACHE_DIR_HELP)
    p.add_argument("--data-cache-dir", default=None, metavar="DIR",
                   help="the built-benchmark cache folder alone (default: DIR/data of the cache root)")


def register(subparsers: Any) -> None:
    from personalrewardbench.data.arena import MULTI_TURN_MODES
    from personalrewardbench.data.build import RAW_SOURCES
    from personalrewardbench.data.prism import PAIR_MODES
    from personalrewardbench.data.splits import DEFAULT_FRACTIONS

    data = subparsers.add_parser("data", help="build, inspect, validate and export benchmarks",
                                 description="Build, inspect, validate and export benchmarks.")
    sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    data.set_defaults(func=lambda a: (data.print_help(), 2)[1])

    b = sub.add_parser("build", help="build a benchmark from a raw source", description=(
        "Build a benchmark from a raw source: per-user preference pairs, filters, a seeded per-user "
        "train/val/test split, validation, manifest. Cached by the hash of inputs + settings."))
    b.add_argument("--source", required=True, choices=(*RAW_SOURCES, "published"),
                   help="chatbot_arena_raw (lmsys/chatbot_arena_conversations), prism_raw "
                        "(HannahRoseKirk/prism-alignment), summarize_feedback (openai/summarize_from_feedback "
                        "comparisons), or published (a local copy / name of the published benchmark)")
    b.add_argument("--input", default=None, metavar="PATH",
                   help="local files (file, folder or hub-repo copy); default: the hub at the pinned revision")
    b.add_argument("--out", required=True, metavar="DIR", help="folder to write (manifest.json, pairs.jsonl, "
                                                               "profiles.json)")
    b.add_argument("--survey", default=None, metavar="PATH",
                   help="prism_raw/published prism: PRISM survey for profiles ('none' to skip; default: survey.jsonl "
                        "next to the input, or the hub)")
    b.add_argument("--seed", type=int, default=0, help="seed of the per-user split (default 0)")
    b.add_argument("--min-pairs-per-user", type=int, default=5, help="drop users with fewer pairs (default 5)")
    b.add_argument("--max-pairs-per-user", type=int, default=None, help="keep at most this many pairs per user")
    b.add_argument("--split-fractions", type=_fractions, default=DEFAULT_FRACTIONS, metavar="TRAIN,VAL,TEST",
                   help="target share of each user's pairs per split (default %(default)s, the published "
                        "Chatbot Arena proportions)")
    b.add_argument("--multi-turn", choices=MULTI_TURN_MODES, default="prefix_a",
                   help="chatbot_arena_raw: how multi-turn battles become pairs (default prefix_a)")
    b.add_argument("--language", action="append", default=None,
                   help="chatbot_arena_raw: keep only this language (repeatable; default all)")
    b.add_argument("--anony-only", action="store_true", help="chatbot_arena_raw: keep anonymous battles only")
    b.add_argument("--prism-pairs", choices=PAIR_MODES, default=PAIR_MODES[0],
                   help="prism_raw: opening-disjoint (default: the opening turn's ratings as disjoint pairs, "
                        "no label readable from the structure) or all-lower (every turn, the chosen response "
                        "against each lower-rated one: the earlier construction, which leaks labels; see README)")
    b.add_argument("--prism-turns", choices=("all", "first"), default="all",
                   help="prism_raw with --prism-pairs all-lower: pairs from every turn, or the opening turn only")
    b.add_argument("--min-score-gap", type=float, default=0.0,
                   help="prism_raw: the chosen rating must exceed the other's by more than this (default 0)")
    b.add_argument("--revision", default=None, help="published: hub revision")
    _add_cache_args(b)
    b.add_argument("--no-cache", action="store_true", help="rebuild even if a cached build matches")
    b.add_argument("--progress", action="store_true", help="show a progress bar while reading records")
    b.set_defaults(func=cmd_build, folder_options=("out",))

    s = sub.add_parser("stats", help="users and pairs per split", description="Print users and pairs per split "
                                                                             "and per dataset.")
    _add_dataset_args(s, many=True)
    s.add_argument("--json", action="store_true", help="print the manifest counts as JSON")
    s.set_defaults(func=cmd_stats)

    v = sub.add_parser("validate", help="check a dataset", description=(
        "Load and check a dataset: required fields, empty or identical responses, serialized messages, duplicate "
        "pair ids, users without test pairs, leakage between a user's train/val and test. Exit 0 if valid "
        "(warnings printed, with where they are)."))
    _add_dataset_args(v)
    v.add_argument("--strict", action="store_true",
                   help="also fail on repaired text (bytes not UTF-8, unpaired surrogates, NUL) and on the content "
                        "quirks the published benchmark is allowed (split disagreement, identical/empty responses, "
                        "test pairs repeating train/val pairs, serialized messages), on NaN in meta fields, and on "
                        "a format mark that separates chosen from rejected (format_mark_one_sided)")
    v.set_defaults(func=cmd_validate)

    a = sub.add_parser("audit", help="how much of the test labels the structure gives away", description=(
        "Per dataset and per user: the share of test pairs whose label can be read off the structure with "
        "label-free information (a response in several of a user's test pairs, a response reappearing in another "
        "pair's context, test pairs repeating train/val pairs, ...) and the structure-only accuracy with a 95% "
        "Clopper-Pearson interval (chance = 50%). Prints a table and writes JSON."))
    _add_dataset_args(a)
    a.add_argument("--out", default=None, metavar="FILE", help="JSON report (default: prb-output/<dataset name>-audit.json, in the "
                   "output folder of `prb run`)")
    a.add_argument("--per-user", action="store_true", help="print one row per user too (the JSON always has them)")
    a.set_defaults(func=cmd_audit)

    e = sub.add_parser("export", help="write a dataset as a built folder or published-schema file",
                       description="Write a dataset as a built folder, or as jsonl/parquet in the published schema.")
    _add_dataset_args(e)
    e.add_argument("--out", required=True, metavar="PATH", help="folder (built) or file (jsonl/parquet)")
    e.add_argument("--format", choices=("built", "jsonl", "parquet"), default="built",
                   help="built folder (default), or one file in the published row schema")
    e.set_defaults(func=cmd_export)


def _load(args: argparse.Namespace, spec: str | None = None) -> Any:
    from personalrewardbench.data.loader import load_benchmark

    return load_benchmark(spec or args.dataset, revision=args.revision, cache_dir=args.data_cache_dir, survey=args.survey,
                          survey_option=True)


def cmd_build(args: argparse.Namespace) -> int:
    from personalrewardbench.data.arena import ArenaSettings
    from personalrewardbench.data.build import plan_build, run_plan
    from personalrewardbench.data.prism import PrismSettings
    from personalrewardbench.data.splits import SplitSettings
    from personalrewardbench.data.store import is_built_folder, save_benchmark

    out = Path(args.out)
    key_file = out / BUILD_KEY_FILE
    if args.source == "published":
        if not args.input:
            raise DataError("--source published needs --input (a name: chatbot_arena/prism, or a local copy).")
        from personalrewardbench.data.published import load_published

        bench, key = load_published(args.input, revision=args.revision, survey=args.survey), None
    else:
        plan = plan_build(
            args.source, input=args.input, survey=args.survey, cache_dir=args.data_cache_dir, use_cache=not args.no_cache,
            split=SplitSettings(seed=args.seed, min_pairs_per_user=args.min_pairs_per_user,
                                max_pairs_per_user=args.max_pairs_per_user, fractions=tuple(args.split_fractions)),
            arena=ArenaSettings(multi_turn=args.multi_turn, languages=tuple(args.language) if args.language else None,
                                anony_only=args.anony_only),
            prism=PrismSettings(pairs=args.prism_pairs, turns=args.prism_turns, min_score_gap=args.min_score_gap),
        )
        key = plan.key
        if (plan.cacheable and is_built_folder(out) and key_file.is_file()
                and key_file.read_text().strip() == key):  # same inputs + settings as the folder's build
            print(f"{out}: up to date ({args.source}, build key {key[:12]}); nothing to do")
            return 0
        bench = run_plan(plan, cache_dir=args.data_cache_dir, progress=args.progress)
    if is_built_folder(out) and _same_build(out, bench.content_hash):
        print(f"{out}: up to date ({bench.name}, content hash {bench.content_hash[:12]})")
    else:
        key_file.unlink(missing_ok=True)
        save_benchmark(bench, out)
        print(f"wrote {out} ({bench.name}, content hash {bench.content_hash[:12]})")
    if key:
        key_file.write_text(key + "\n")
    _print_stats(bench)
    return 0


def _same_build(out: Path, content_hash: str) -> bool:
    try:
        return json.loads((out / "manifest.json").read_text())["content_hash"] == content_hash
    except (OSError, ValueError, KeyError):
        return False


def _print_stats(bench: Any, file: Any = None) -> None:
    file = file or sys.stdout
    c = bench.manifest.counts
    print(f"{'dataset':<22} {'split':<6} {'users':>7} {'pairs':>8}", file=file)
    for ds, block in sorted(c["datasets"].items()):
        for split in ("train", "val", "test"):
            sc = block["splits"][split]
            print(f"{ds:<22} {split:<6} {sc['users']:>7} {sc['pairs']:>8}", file=file)
        print(f"{ds:<22} {'all':<6} {block['users']:>7} {block['pairs']:>8}", file=file)
    for label, kinds in _warning_groups(bench.manifest):
        print(f"{label}: " + ", ".join(f"{k}={v}" for k, v in kinds.items()), file=file)


def _warning_groups(manifest: Any) -> list[tuple[str, dict[str, int]]]:
    """The manifest's warnings as (label, {kind: count}) groups: repaired text, content quirks
    (of the published benchmark), everything else."""
    from personalrewardbench.data.text import CONTENT_QUIRKS, TEXT_REPAIRS

    w = manifest.warnings
    groups = [("text repaired (U+FFFD)", {k: v for k, v in w.items() if k in TEXT_REPAIRS}),
              ("content quirks of the published benchmark" if manifest.official else "content quirks",
               {k: v for k, v in w.items() if k in CONTENT_QUIRKS}),
              ("warnings", {k: v for k, v in w.items() if k not in TEXT_REPAIRS and k not in CONTENT_QUIRKS})]
    return [(label, kinds) for label, kinds in groups if kinds]


def cmd_stats(args: argparse.Namespace) -> int:
    benches = [_load(args, spec) for spec in args.dataset]
    if args.json:
        out = [{"name": b.name, "content_hash": b.content_hash, "counts": b.manifest.counts,
                "official": b.manifest.official, "warnings": dict(b.manifest.warnings),
                "warning_locations": dict(b.manifest.warning_locations)} for b in benches]
        print(json.dumps(out[0] if len(out) == 1 else out, indent=2, sort_keys=True))
        return 0
    for bench in benches:
        print(f"{bench.name} (content hash {bench.content_hash[:12]})")
        _print_stats(bench)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from personalrewardbench.data.text import STRICT_KINDS

    bench = _load(args)  # loading validates; errors raise DataError
    m = bench.manifest
    w = m.warnings
    if args.strict and (bad := [k for k in w if k in STRICT_KINDS]):
        first = "; ".join(f"{k}={w[k]} (first: {(m.warning_locations.get(k) or ['?'])[0]})" for k in bad)
        raise DataError(f"{bench.name}: invalid under --strict: {first}. Fix the source file(s), or drop --strict "
                        "to accept the repaired text, the published benchmark's quirks and one-sided format marks as "
                        "warnings.")
    print(f"{bench.name}: valid: {m.counts['users']} users, {m.counts['pairs']} pairs"
          + (f"; warnings: {', '.join(f'{k}={v}' for k, v in w.items())}" if w else "; no warnings"))
    for kind, locs in m.warning_locations.items():
        rest = w.get(kind, len(locs)) - len(locs[:3])
        print(f"  {kind}: " + "; ".join(locs[:3]) + (f"; ... {rest} more" if rest > 0 else ""))
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from personalrewardbench.data.audit import audit_benchmark, format_table, write_report

    bench = _load(args)
    report = audit_benchmark(bench)
    print(format_table(report, per_user=args.per_user))
    if args.out:
        out = write_report(report, args.out)
        print(f"wrote {out}")
    else:
        from personalrewardbench.run_command import OUTPUT_DIR

        out = write_report(report, OUTPUT_DIR / f"{Path(bench.name).name or 'dataset'}-audit.json")
        print(f"wrote {out} (the JSON report, per user too; --out FILE writes it elsewhere)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from personalrewardbench.data.export import write_published_rows
    from personalrewardbench.data.store import save_benchmark

    if args.format == "built":
        from personalrewardbench.cli_options import check_folder_options

        check_folder_options(argparse.Namespace(folder_options=("out",), out=args.out))
    bench = _load(args)
    if args.format == "built":
        save_benchmark(bench, args.out)
    else:
        write_published_rows(bench, Path(args.out), fmt=args.format)
    print(f"wrote {args.out} ({bench.name}, {bench.manifest.counts['pairs']} pairs, format {args.format})")
    return 0
