"""`prb evaluate`, `prb merge`, `prb compare`, `prb verify`."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from personalrewardbench.methods import MethodError


def _command_line() -> str:
    return shlex.join(["prb", *sys.argv[1:]])


def _parse_config(text: str | None) -> dict[str, Any]:
    """``--config``: a JSON object given inline (``'{"alpha": 2.0}'``) or the path of a ``.json`` file
    holding one. MethodError naming the file (or the inline text) and the fix when the file is missing,
    unreadable or not a JSON object."""
    if not text:
        return {}
    inline = text.lstrip().startswith(("{", "["))
    path = Path(text).expanduser()
    where = "--config" if inline else f"--config {text}"
    if inline:
        raw = text
    elif path.is_file():
        try:
            raw = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise MethodError(f"--config {text}: cannot be read ({getattr(exc, 'strerror', None) or exc}); "
                              "pass a readable UTF-8 .json file or an inline object like '{\"alpha\": 2.0}'") from None
    elif path.exists():
        raise MethodError(f"--config {text}: not a file; pass a .json file or an inline object like "
                          "'{\"alpha\": 2.0}'")
    elif text.strip().endswith(".json") or "/" in text or "\\" in text:
        raise MethodError(f"--config {text}: file not found; check the path, or pass the settings inline as a "
                          "JSON object like '{\"alpha\": 2.0}'")
    else:
        raw = text
    try:
        cfg = json.loads(raw)
    except json.JSONDecodeError as exc:
        at = f"line {exc.lineno}, column {exc.colno}" if not inline and path.is_file() else f"column {exc.colno}"
        raise MethodError(f"{where}: not valid JSON ({exc.msg} at {at}); write a JSON object like "
                          "'{\"alpha\": 2.0}' (keys in double quotes)"
                          + ("" if inline or path.is_file() else ", or the path of an existing .json file")) from None
    if not isinstance(cfg, dict):
        raise MethodError(f"{where}: must be a JSON object of constructor arguments, like '{{\"alpha\": 2.0}}', "
                          f"not a {type(cfg).__name__}")
    return cfg


def _fmt(x: Any, pct: bool = True) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, list):
        return f"[{_fmt(x[0])}, {_fmt(x[1])}]"
    return f"{100 * x:.1f}%" if pct else str(x)


def _ci(s: dict[str, Any], name: str) -> str:
    """An interval with its kind, or why there is none (``scores.ci_kind`` / ``ci_detail``)."""
    kind = (s.get("ci_kind") or {}).get(name)
    detail = (s.get("ci_detail") or {}).get(name) or {}
    if s.get(name) is None:
        return f"none ({detail.get('reason', 'not computed')})" if detail else "n/a"
    return _fmt(s[name]) + (f" {kind}" if kind and kind != "bootstrap-basic" else "")


def summary_table(results: dict[str, Any], run_dir: Path) -> str:
    """The table `prb evaluate` prints at the end of a run."""
    from personalrewardbench.degradation import degradation_flags

    s, c, ds = results.get("scores") or {}, results.get("cost") or {}, results["dataset"]
    rows = [("method", results["method"]["name"]), ("dataset", f"{ds['name']} ({ds['content_hash'][:12]})"),
            ("users / test pairs", f"{ds['n_users']} / {ds['n_test_pairs']}")]
    if results["status"] != "ok":
        rows.append(("status", f"{results['status']}: {results['not_applicable_reason']}"))
    else:
        rows += [
            ("accuracy (pooled)", f"{_fmt(s['accuracy'])}  95% CI pairs {_ci(s, 'accuracy_ci95')}, "
                                  f"users {_ci(s, 'accuracy_ci95_users')}"),
            ("accuracy (mean of users)", f"{_fmt(s['user_mean_accuracy'])}  95% CI {_ci(s, 'user_mean_accuracy_ci95')}"
                                         f"; reference kind {_ci(s, 'user_mean_accuracy_ci95_reference')}"),
            ("position consistency", _fmt(s["position_consistency"])),
            ("judgments / ties / failed", f"{s['n_judgments']} / {s['n_ties']} / {s['n_failed']}"),
        ]
    rows += [("LLM calls / tokens", f"{c.get('llm_calls', 0)} / {c.get('prompt_tokens', 0) + c.get('completion_tokens', 0)}"
                                    f" ({c.get('cache_hits', 0)} cached)"),
             ("seconds (fit / predict / total)", f"{c.get('seconds_fit')} / {c.get('seconds_predict')} / "
                                                 f"{c.get('seconds_total')}")]
    rows += [("DEGRADED", flag) for flag in degradation_flags(results)]
    rows.append(("results", str(run_dir)))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from personalrewardbench.evaluate import default_run_dir, parse_shard, run_evaluation, users_note
    from personalrewardbench.methods import MethodEnv, list_methods, load_method

    if args.list_methods:
        for name, source in list_methods().items():
            print(f"{name:32s} {source}")
        return 0
    if not args.method or not args.dataset:
        raise MethodError("prb evaluate needs --method NAME and --dataset {chatbot_arena,prism,synthetic,PATH}")
    from personalrewardbench.data import load_benchmark

    method = load_method(args.method, _parse_config(args.config))
    shard = parse_shard(args.shard)
    benchmark = load_benchmark(args.dataset, revision=args.revision)
    note = users_note(benchmark, args.users)
    if note:
        print(f"prb evaluate: {note}", file=sys.stderr)
    llm = None
    if "llm" in method.capabilities:
        from personalrewardbench.llm import llm_from_args

        llm = llm_from_args(args)
    env = MethodEnv(seed=args.seed, llm=llm, show_progress=not args.quiet)
    from personalrewardbench.llm.base import degraded_since, usage_counters

    llm_before = usage_counters(llm)
    try:
        run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(
            Path(args.out), method, benchmark, env, n_users=args.users, shard=shard)
        results = run_evaluation(method, benchmark, env, run_dir, n_users=args.users, shard=shard,
                                 chunk_size=args.chunk_size, resume=args.resume, resamples=args.bootstrap,
                                 command=_command_line(), show_progress=not args.quiet, dataset_spec=args.dataset)
    finally:
        if llm is not None:
            llm.close()
    print(summary_table(results, run_dir))
    if (note := degraded_since(llm, llm_before)) is not None:
        print(f"warning: {note}")
    return 0


def verify_folders(paths: list[str], *, dataset: str | None = None, predictions_only: bool = False,
                   ignore_seal: bool = False, out: Any = None) -> int:
    """Verify each run folder under ``paths`` and print one block per run; returns the number that failed.

    A run fails when a figure or hash does not reproduce, when its benchmark cannot be found
    (unless ``predictions_only``), or when its seal is missing or bad (unless ``ignore_seal``).
    """
    from personalrewardbench.benchmark_lookup import BenchmarkFinder
    from personalrewardbench.results import ResultsError, find_runs, read_results
    from personalrewardbench.runs import verify_run
    from personalrewardbench.seal import SealError, check_seal, load_key

    out = out or sys.stdout
    runs = find_runs(paths)
    if not runs:
        raise MethodError(f"no results.json found under {', '.join(paths)}; name a run folder (holding results.json) "
                          "or a folder of runs, e.g. prb-output/results (`prb run`) or results (`prb evaluate`)")
    finder = BenchmarkFinder()
    key, key_problem = None, ""
    if not ignore_seal:
        try:
            key = load_key(create=False)
        except SealError as exc:
            key_problem = str(exc)
    failed = 0
    for run in runs:
        bench, notes, problems = None, [], []
        if not predictions_only:
            try:
                res = read_results(run)
            except ResultsError:
                res = None  # verify_run names the problem
            try:
                if res is not None:
                    bench, how = finder.find(res, dataset)
                    notes.append(f"benchmark {bench.name} ({bench.content_hash[:12]}...) {how}")
            except ResultsError as exc:
                problems.append(str(exc))
        problems += verify_run(run, bench)
        if not ignore_seal:
            seal = check_seal(run, key) if key is not None else None
            if seal is None:
                problems.append(f"seal not checked, for want of a key (not a sign of tampering): {key_problem}; "
                                "pass --ignore-seal to check the figures alone")
            elif seal.ok:
                notes.append(seal.detail)
            else:
                problems.append(f"{'unsealed' if seal.status == 'unsealed' else 'bad seal'}: {seal.detail} "
                                "(pass --ignore-seal to check the figures alone)")
        failed += bool(problems)
        print(f"{'FAIL' if problems else 'ok  '} {run}", file=out)
        for line in notes:
            print(f"       {line}", file=out)
        for line in problems:
            print(f"  - {line}", file=out)
    print(f"{len(runs) - failed} of {len(runs)} results verified" + (f"; {failed} FAILED" if failed else "")
          + ("; no seal could be checked without a seal key: --ignore-seal verifies the figures alone"
             if failed and key is None and not ignore_seal else ""), file=out)
    return failed


# Where runs are written by default: `prb evaluate` (and merge) into results/, `prb run` into prb-output/results/.
DEFAULT_RESULTS = ("results", "prb-output/results")


def default_verify_paths() -> list[str]:
    """The default results roots that exist in the working directory; MethodError saying where runs
    are written and how to name one when none does."""
    paths = [p for p in DEFAULT_RESULTS if Path(p).is_dir()]
    if not paths:
        raise MethodError(f"nothing to verify in {Path.cwd()}: neither results/ (written by `prb evaluate`) nor "
                          "prb-output/results/ (written by `prb run`) is here; run `prb verify` from the folder where "
                          "the runs were made, or name a results folder or run folder: prb verify PATH")
    return paths


def cmd_verify(args: argparse.Namespace) -> int:
    paths = args.paths or default_verify_paths()
    if args.paths:
        from personalrewardbench.run_folders import unmatched_pattern

        unmatched = [p for p in paths if unmatched_pattern(p)]
        if unmatched and len(unmatched) < len(paths):  # verify what exists; say which pattern matched nothing
            for p in unmatched:
                print(f"prb verify: note: no folder matches {p} (the shell passes a pattern that matches nothing "
                      "unchanged); verifying the others", file=sys.stderr)
            paths = [p for p in paths if p not in unmatched]
    else:
        print(f"prb verify: checking {' and '.join(p + '/' for p in paths)}", file=sys.stderr)
    failed = verify_folders(paths, dataset=args.dataset, predictions_only=args.predictions_only,
                            ignore_seal=args.ignore_seal)
    return 1 if failed else 0


def cmd_merge(args: argparse.Namespace) -> int:
    from personalrewardbench.results import read_results
    from personalrewardbench.runs import check_run_folder, merge_runs

    for shard in args.shards:
        check_run_folder(shard)
    out = Path(args.out) if args.out else None
    if out is None:
        import hashlib

        ids = sorted(read_results(d)["run_id"] for d in args.shards)
        stem = "-".join(part for part in ids[0].split("-")[:-1] if not part.startswith("shard"))
        digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:8]
        out = Path(sorted(args.shards)[0]).parent / f"{stem}-merged-{digest}"
    merged = merge_runs(args.shards, out, command=_command_line())
    print(summary_table(merged, out))
    return 0


def two_run_folders(runs: list[str]) -> tuple[str, str]:
    """The two run folders ``prb compare`` takes; MethodError naming what was given otherwise (a shell
    pattern such as ``s0-*`` also matches subset, shard and merged runs: ``s0-u8-...``, ``s0-merged-...``)."""
    if len(runs) == 2:
        return runs[0], runs[1]
    if not runs:
        raise MethodError("compare takes two run folders (each holding results.json); got none: "
                          "prb compare RUN_A RUN_B")
    shown = ", ".join(runs[:6]) + (f", ... ({len(runs) - 6} more)" if len(runs) > 6 else "")
    why = ("; a pattern matched several; name the run folders (e.g. s0-[0-9a-f]* matches only the runs on all "
           "users)" if len(runs) > 2 else "; name a second run folder to compare it with")
    raise MethodError(f"compare takes two run folders; got {len(runs)}: {shown}{why}")


def cmd_compare(args: argparse.Namespace) -> int:
    from personalrewardbench.runs import compare_runs

    a, b = two_run_folders(args.runs)
    out = compare_runs(a, b, resamples=args.bootstrap, seed=args.seed)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{out['a']} vs {out['b']} on {out['dataset']}: {out['n_pairs']} shared pairs, {out['n_users']} users")
    print(f"  accuracy {_fmt(out['accuracy_a'])} vs {_fmt(out['accuracy_b'])}; "
          f"difference {100 * out['difference']:+.1f} points")
    from personalrewardbench.intervals import interval_note

    def ci(name: str) -> str:  # None: fewer than 2 pairs/users
        c, kind = out[name], out["ci_kind"][name]
        if not c:
            return f"none ({out['ci_detail'][name].get('reason', 'too few units')})"
        return f"[{100 * c[0]:+.1f}, {100 * c[1]:+.1f}] ({interval_note(kind, out['ci_detail'][name])})"

    print(f"  95% CI over pairs {ci('ci95')}; over users {ci('ci95_users')}")
    print(f"  p = {out['p_value']:.4g} ({out['p_value_test']}; {out['wins_a']} pairs favour {out['a']}, "
          f"{out['wins_b']} favour {out['b']}, ties left out)")
    if out["p_value"] < 0.05 and any(out["ci_kind"][n] in ("wilson", "clopper-pearson") and out[n]
                                     and out[n][0] <= 0 <= out[n][1] for n in ("ci95", "ci95_users")):
        print("  note: a conservative interval (Wilson, Clopper-Pearson) can include 0 while the sign test is "
              "decisive: it covers 95% whatever the spread between units, the test counts only pairs that differ")
    if out["n_only_a"] or out["n_only_b"]:
        print(f"  note: {out['n_only_a']} judgments only in the first run, {out['n_only_b']} only in the second")
    return 0


EVALUATE_EXAMPLES = """examples:
  prb evaluate --list-methods
  prb evaluate --method length --dataset synthetic
  prb evaluate --method embed-logreg --dataset ../shared/data/summarize-from-feedback --users all
  prb evaluate --method default-judge --dataset prism --users 50 --backend openai --base-url http://127.0.0.1:8000/v1
  prb evaluate --method path/to/my-method/ --dataset synthetic --config '{"alpha": 2.0}'
  prb evaluate --method my_pkg.methods:MyMethod --dataset prism --shard 0/4 --threads 2
"""
VERIFY_EXAMPLES = """examples:
  prb verify                                   # every run under results/ and prb-output/results/
  prb verify prb-output/results results        # runs of `prb run` and of `prb evaluate`
  prb verify submissions/my-method/results     # a submission's runs
  prb verify results/mydata/length/s0-1a2b3c4d --dataset path/to/mydata
  prb verify results/ --predictions-only        # without loading the benchmark
"""
MERGE_EXAMPLES = """examples:
  prb merge results/prism/my-method/s0-shard*of4-*
  prb merge results/prism/my-method/s0-shard0of2-* results/prism/my-method/s0-shard1of2-* --out merged/
"""
COMPARE_EXAMPLES = """examples:
  prb compare prb-output/results/synthetic-sample/embed-logreg/s0-[0-9a-f]* prb-output/results/synthetic-sample/length/s0-[0-9a-f]*   # all-user runs only (s0-* also matches s0-u8-..., s0-merged-...)
  prb compare results/prism/my-method/s0-1a2b3c4d results/prism/length/s0-5e6f7a8b   # runs of `prb evaluate`
  prb compare RUN_A RUN_B --json --bootstrap 5000
"""


def register(subparsers: Any) -> None:
    from personalrewardbench.cli_options import BOOTSTRAP_HELP, add_threads_argument, bootstrap_count, users_count
    from personalrewardbench.cli_options import HelpFormatter as raw
    from personalrewardbench.data.commands import DATASET_HELP
    p = subparsers.add_parser("evaluate", help="fit a method and score it on a benchmark", formatter_class=raw,
                              description="Fit a method on each user's train/val pairs, judge every test pair in "
                                          "both orders, score, and write results/<dataset>/<method>/<run-id>/ "
                                          "(results.json, predictions.jsonl, artifacts.json). Rerunning the same "
                                          "command resumes; a finished run is reused unchanged.",
                              epilog=EVALUATE_EXAMPLES)
    p.add_argument("--method", help="registered name, module:Class, or a folder with submission.toml")
    p.add_argument("--dataset", metavar="NAME_OR_PATH", help=DATASET_HELP)
    p.add_argument("--revision", default=None, help="dataset revision on the hub (default: the pinned one)")
    p.add_argument("--users", type=users_count, default=None, metavar="N|all",
                   help="evaluate a seeded sample of N users, or all of them (default: all)")
    p.add_argument("--shard", default=None, help="i/n: evaluate the i-th of n user shards (0-based); join with prb merge")
    p.add_argument("--seed", type=int, default=0, help="seed for query ids, user sampling, method and bootstrap")
    p.add_argument("--out", default="results", help="results root (default: results)")
    p.add_argument("--run-dir", default=None, help="exact run folder (default: OUT/<dataset>/<method>/<run-id>)")
    p.add_argument("--config", default=None, help="JSON object (or .json file) of constructor arguments")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="skip queries already predicted in the run folder (default: on)")
    p.add_argument("--chunk-size", type=int, default=256, help="queries per predict() call (default: 256)")
    p.add_argument("--bootstrap", type=bootstrap_count, default=1000, help=BOOTSTRAP_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--list-methods", action="store_true", help="list registered methods and exit")
    try:
        from personalrewardbench.llm import add_llm_arguments
    except ImportError:  # pragma: no cover - the LLM layer is part of the package
        pass
    else:
        add_llm_arguments(p)
    add_threads_argument(p)
    p.set_defaults(func=cmd_evaluate, folder_options=("out", "run_dir"))

    v = subparsers.add_parser("verify", help="recompute every figure of results folders and check their hashes",
                              formatter_class=raw, epilog=VERIFY_EXAMPLES,
                              description="Recompute every figure of each results.json from its predictions.jsonl "
                                          "(and the benchmark: coverage, n_train/n_val), check the sha256 of its "
                                          "files, and print ok/FAIL per run. Exit status 1 on any mismatch.")
    v.add_argument("paths", nargs="*", help="results folders or roots (default: results/ and prb-output/results/, "
                                            "those that exist)")
    v.add_argument("--dataset", default=None,
                   help="benchmark to verify against (default: found from results.json: by name, by the recorded "
                        "local path, or in the build cache by content hash)")
    v.add_argument("--predictions-only", action="store_true",
                   help="check hashes and figures from predictions alone, without the benchmark")
    v.add_argument("--ignore-seal", action="store_true",
                   help="do not require a seal made with this machine's key ($PRB_SEAL_KEY or the cache's seal.key)")
    v.set_defaults(func=cmd_verify)

    m = subparsers.add_parser("merge", help="join shard runs (--shard i/n) into one run", formatter_class=raw,
                              epilog=MERGE_EXAMPLES,
                              description="Join the run folders of one `prb evaluate --shard i/n` split (every i "
                                          "once, same method, config, benchmark and seed) into one run whose figures "
                                          "are recomputed from the joined predictions; the order of the folders "
                                          "does not matter.")
    m.add_argument("shards", nargs="+", help="the shard run folders")
    m.add_argument("--out", default=None, help="merged run folder (default: next to the first shard, '-merged')")
    m.set_defaults(func=cmd_merge, folder_options=("out",))

    c = subparsers.add_parser("compare", help="paired comparison of two runs on the same pairs", formatter_class=raw,
                              epilog=COMPARE_EXAMPLES,
                              description="Paired difference in accuracy (A minus B) on the judgments both runs "
                                          "made, with 95% CIs over pairs and over users and a p-value. Each interval "
                                          "is chosen by one rule (personalrewardbench/intervals.py) and printed with "
                                          "its kind: the paired basic bootstrap; the Wilson score interval below 50 "
                                          "effective units (or with fewer than 10 units that differ from the most "
                                          "common one), conservative; the exact Clopper-Pearson interval when one run "
                                          "wins every unit. The p-value is the two-sided exact sign test over the "
                                          "pairs where the two runs' numbers of correct judgments differ (ties left "
                                          "out). Both runs must be on the same benchmark version.")
    c.add_argument("runs", nargs="*", metavar="RUN", help="the two run folders: first (A), second (B)")
    c.add_argument("--bootstrap", type=bootstrap_count, default=1000, help=BOOTSTRAP_HELP)
    c.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    c.add_argument("--json", action="store_true", help="print the comparison as JSON")
    c.set_defaults(func=cmd_compare)
