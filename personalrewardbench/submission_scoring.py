"""Score a submission folder in the sandbox and compare it with baselines on the same pairs.

Used by ``prb submission score`` and ``scripts/score_submissions.py`` (CI).
A failed sandboxed run (crash, hang, memory, bad predictions) leaves no
results.json and no partial predictions behind: it is reported, never scored.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from personalrewardbench.data.schema import Benchmark
from personalrewardbench.methods import MethodEnv, MethodError
from personalrewardbench.sandbox import SandboxedMethod, SandboxError, SandboxLimits
from personalrewardbench.submission import read_submission


@dataclass
class ScoreOutcome:
    """What happened to one method name of a submission on one benchmark."""

    method: str
    dataset: str
    status: str  # "ok" | "not_applicable" | "failed" | "skipped"
    run_dir: Path | None = None
    results: dict[str, Any] | None = None
    error: str | None = None
    kind: str | None = None  # SandboxError.kind for failures
    comparisons: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.status == "failed"


def score_submission(folder: str | Path, benchmark: Benchmark, out_root: str | Path, *,
                     names: Sequence[str] | None = None, limits: SandboxLimits | None = None, llm: Any = None,
                     seed: int = 0, n_users: int | None = None, resamples: int = 1000, chunk_size: int | None = None,
                     show_progress: bool = True, command: str | None = None) -> list[ScoreOutcome]:
    """Run each requested method name (default: the base name and all variants) sandboxed on ``benchmark``;
    results go to ``out_root/<dataset>/<method>/<run-id>/``."""
    from personalrewardbench.evaluate import default_run_dir, run_evaluation

    sub = read_submission(folder)
    out: list[ScoreOutcome] = []
    for name in names or sub.method_names():
        outcome = ScoreOutcome(method=name, dataset=benchmark.name, status="failed")
        out.append(outcome)
        if not sub.requirements.allows_dataset(benchmark.name) and not benchmark.manifest.synthetic:
            outcome.status, outcome.error = "skipped", (
                f"[requirements].datasets = {list(sub.requirements.datasets)} does not include {benchmark.name}")
            continue
        if sub.requirements.llm and llm is None:
            outcome.error = f"{name} needs an LLM ([requirements] llm = true); pass --backend/--model"
            outcome.kind = "config"
            continue
        try:
            method = SandboxedMethod(sub.folder, name, limits=limits)
        except SandboxError as exc:
            outcome.error, outcome.kind = str(exc), exc.kind
            continue
        env = MethodEnv(seed=seed, llm=llm if sub.requirements.llm else None, show_progress=show_progress)
        run_dir = default_run_dir(Path(out_root), method, benchmark, env, n_users=n_users)
        existed = (run_dir / "results.json").exists()
        try:
            chunk = {"chunk_size": chunk_size} if chunk_size else {}
            results = run_evaluation(method, benchmark, env, run_dir, n_users=n_users, resume=False,
                                     resamples=resamples, command=command, show_progress=show_progress, **chunk)
        except MethodError as exc:
            outcome.error, outcome.kind = str(exc), getattr(exc, "kind", "bad-output")
            if not existed:  # never leave a partial run behind
                shutil.rmtree(run_dir, ignore_errors=True)
            else:
                for name_ in ("results.json", "predictions.jsonl"):
                    (run_dir / name_).unlink(missing_ok=True)
            continue
        finally:
            method.close()
        outcome.status, outcome.run_dir, outcome.results = results["status"], run_dir, results
    return out


def run_baselines(names: Sequence[str], benchmark: Benchmark, results_root: str | Path, *, llm: Any = None,
                  seed: int = 0, n_users: int | None = None, resamples: int = 1000,
                  show_progress: bool = True) -> dict[str, Path]:
    """Run (or reuse, when already complete) first-party baselines in-process; name -> run folder.

    Baselines are trusted code from this repository, so they run without the sandbox.
    A baseline that needs an LLM is skipped when ``llm`` is None.
    """
    from personalrewardbench.evaluate import default_run_dir, run_evaluation
    from personalrewardbench.methods import load_method

    out: dict[str, Path] = {}
    for name in names:
        method = load_method(name)
        if "llm" in method.capabilities and llm is None:
            continue
        env = MethodEnv(seed=seed, llm=llm if "llm" in method.capabilities else None, show_progress=show_progress)
        run_dir = default_run_dir(Path(results_root), method, benchmark, env, n_users=n_users)
        res = run_evaluation(method, benchmark, env, run_dir, n_users=n_users, resume=True, resamples=resamples,
                             show_progress=show_progress)
        if res["status"] == "ok":
            out[name] = run_dir
    return out


def compare_with_baselines(outcome: ScoreOutcome, baselines: dict[str, Path], *, resamples: int = 1000,
                           seed: int = 0) -> list[dict[str, Any]]:
    """Paired difference (submission minus baseline) on the shared judgments, with 95% CIs."""
    from personalrewardbench.runs import compare_runs

    if outcome.status != "ok" or outcome.run_dir is None:
        return []
    outcome.comparisons = [compare_runs(outcome.run_dir, run_dir, resamples=resamples, seed=seed)
                           for _, run_dir in sorted(baselines.items())]
    return outcome.comparisons


def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{100 * float(x):.1f}%"


def _pp(x: Any, signed: bool = True) -> str:
    return "n/a" if x is None else (f"{100 * float(x):+.1f}" if signed else f"{100 * float(x):.1f}")


def markdown_summary(outcomes: Sequence[ScoreOutcome], *, title: str = "Submission scores") -> str:
    """A Markdown report for a pull-request comment: scores, paired differences, failures."""
    lines = [f"## {title}", ""]
    if not outcomes:
        return "\n".join([*lines, "No changed submissions found.", ""])
    lines += ["| method | dataset | status | accuracy [95% CI] | users | judgments | run |",
              "|---|---|---|---|---|---|---|"]
    for o in outcomes:
        s = (o.results or {}).get("scores") or {}
        acc = f"{_pct(s.get('accuracy'))} [{_pct((s.get('accuracy_ci95') or [None])[0])}, " \
              f"{_pct((s.get('accuracy_ci95') or [None, None])[1])}]" if s else "-"
        status = {"failed": "**FAILED**"}.get(o.status, o.status)
        run = f"`{o.run_dir}`" if o.run_dir else "-"
        lines.append(f"| `{o.method}` | {o.dataset} | {status} | {acc} | {s.get('n_users', '-')} | "
                     f"{s.get('n_judgments', '-')} | {run} |")
    for o in outcomes:
        if o.comparisons:
            lines += ["", f"### `{o.method}` vs baselines on {o.dataset} (same pairs)", "",
                      "| baseline | submission | baseline | difference, points [95% CI pairs] | [95% CI users] | "
                      "p (sign test) | judgments |", "|---|---|---|---|---|---|---|"]
            for c in o.comparisons:
                ci, cu = c.get("ci95") or [None, None], c.get("ci95_users") or [None, None]
                lines.append(f"| `{c['b']}` | {_pct(c['accuracy_a'])} | {_pct(c['accuracy_b'])} | "
                             f"{_pp(c['difference'])} [{_pp(ci[0])}, {_pp(ci[1])}] | [{_pp(cu[0])}, {_pp(cu[1])}] | "
                             f"{c['p_value']:.3g} | {c['n_judgments']} |")
    failures = [o for o in outcomes if o.status in ("failed", "skipped")]
    if failures:
        lines += ["", "### Problems", ""]
        for o in failures:
            lines += [f"**`{o.method}` on {o.dataset}: {o.status}**" + (f" ({o.kind})" if o.kind else ""), "",
                      "```", (o.error or "").strip(), "```", ""]
    sandbox = next(((o.results or {}).get("method_usage", {}).get("sandbox") for o in outcomes if o.results), None)
    if sandbox:
        lines += ["", f"Sandbox: {sandbox['mode']} mode ({'; '.join(sandbox['enforced'])}); limits "
                      f"{sandbox['limits']['time_s']:g} s, {sandbox['limits']['memory_mb']} MiB."]
    return "\n".join(lines).rstrip() + "\n"
