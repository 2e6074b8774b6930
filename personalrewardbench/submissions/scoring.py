"""Score a submission folder in the sandbox and compare it with baselines on the same pairs.

:func:`score_submission` is the one entry point (used by ``prb submission score`` and
``scripts/score_submissions.py``): it takes one read-only snapshot of the folder, runs every
method name (base and variants) in a :class:`SandboxedMethod` through the ordinary
``run_evaluation`` (so results are written by the harness from its own records, into a
results root outside the submission folder), and returns one :class:`ScoreOutcome` per
name. A failed sandboxed run (crash, hang, memory, bad predictions, broken protocol, or
an internal error) leaves no results.json and no partial predictions behind, says so, and
never stops the other names.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from personalrewardbench.data.schema import Benchmark
from personalrewardbench.methods import MethodEnv, MethodError
from personalrewardbench.submissions.limits import SandboxLimits
from personalrewardbench.submissions.sandbox import SandboxedMethod
from personalrewardbench.submissions.snapshot import Snapshot
from personalrewardbench.submissions.spec import SubmissionError, read_submission

DISCARDED = "partial output discarded: no results.json or predictions were kept for this run"


@dataclass
class ScoreOutcome:
    """What happened to one method name of a submission on one benchmark."""

    method: str
    dataset: str
    status: str  # "ok" | "not_applicable" | "failed" | "skipped"
    run_dir: Path | None = None
    results: dict[str, Any] | None = None
    error: str | None = None
    kind: str | None = None  # SandboxError.kind for failures ("invalid", "config", "internal", ...)
    comparisons: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.status == "failed"


def _discard(run_dir: Path | None, existed: bool) -> None:
    if run_dir is None:
        return
    if not existed:  # never leave a partial run behind
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    from personalrewardbench.results import ARTIFACTS_FILE, PREDICTIONS_FILE, PROGRESS_FILE, RESULTS_FILE

    for name in (RESULTS_FILE, PREDICTIONS_FILE, ARTIFACTS_FILE, PROGRESS_FILE, "seal.json", "query-key.json"):
        (run_dir / name).unlink(missing_ok=True)


def outside_problems(folder: str | Path, roots: dict[str, str | Path | None]) -> list[str]:
    """One message per folder the harness writes that lies inside the submission ``folder`` (whose every
    file the snapshot copies, so the method could read it): each of ``roots`` (what it is, e.g. "--out",
    -> its path; None is skipped) and the harness's cache (``$PRB_CACHE_DIR``, default ``.prb-cache``:
    built benchmarks with their test labels, and the seal key). Empty when all lie outside."""
    root = Path(folder).resolve()
    out = []
    for what, path in roots.items():
        if path is None:
            continue
        resolved = Path(path).expanduser().resolve()
        if resolved == root or root in resolved.parents:
            out.append(f"{what} {path} is inside the submission folder {folder}, whose files the method can "
                       "read; pick a folder outside it")
    cache = Path(os.environ.get("PRB_CACHE_DIR") or ".prb-cache").resolve()
    if cache == root or root in cache.parents:
        out.append(f"the harness's cache {cache} (built benchmarks with their test labels, the seal key) is inside "
                   f"the submission folder {folder}, whose files the method can read; run from outside the folder "
                   "or set PRB_CACHE_DIR to a folder outside it")
    return out


def score_submission(folder: str | Path, benchmark: Benchmark, out_root: str | Path, *,
                     names: Sequence[str] | None = None, limits: SandboxLimits | None = None, llm: Any = None,
                     seed: int = 0, n_users: int | None = None, resamples: int = 1000, chunk_size: int | None = None,
                     show_progress: bool = True, command: str | None = None) -> list[ScoreOutcome]:
    """Run each requested method name (default: the base name and all variants) sandboxed on ``benchmark``;
    results go to ``out_root/<dataset>/<method>/<run-id>/`` (keep ``out_root`` outside the submission folder).

    Never raises for a problem with the submission: each becomes a failed outcome.
    """
    try:
        sub = read_submission(folder)
        problems = outside_problems(sub.folder, {"results root": out_root})
        if problems:
            raise SubmissionError("; ".join(problems))
        from personalrewardbench.seal import SealError, load_key

        try:  # every run is sealed, and its progress authenticated, with this key: refuse before anything runs
            load_key()
        except SealError as exc:
            return [ScoreOutcome(method=Path(folder).name, dataset=benchmark.name, status="failed",
                                 error=f"no usable seal key: {exc}", kind="config")]
        snapshot = Snapshot(sub.folder)
    except SubmissionError as exc:
        return [ScoreOutcome(method=Path(folder).name, dataset=benchmark.name, status="failed", error=str(exc),
                             kind="invalid")]
    try:
        return [_score_one(sub, snapshot, name, benchmark, Path(out_root), limits=limits, llm=llm, seed=seed,
                           n_users=n_users, resamples=resamples, chunk_size=chunk_size,
                           show_progress=show_progress, command=command)
                for name in (names or sub.method_names())]
    finally:
        snapshot.remove()


def _score_one(sub: Any, snapshot: Snapshot, name: str, benchmark: Benchmark, out_root: Path, *,
               limits: SandboxLimits | None, llm: Any, seed: int, n_users: int | None, resamples: int,
               chunk_size: int | None, show_progress: bool, command: str | None) -> ScoreOutcome:
    from personalrewardbench.evaluate import default_run_dir, run_evaluation

    outcome = ScoreOutcome(method=name, dataset=benchmark.name, status="failed")
    if not sub.requirements.allows_dataset(benchmark.name) and not benchmark.manifest.synthetic:
        outcome.status, outcome.error = "skipped", (
            f"[requirements].datasets = {list(sub.requirements.datasets)} does not include {benchmark.name}")
        return outcome
    if sub.requirements.llm and llm is None:
        outcome.error, outcome.kind = f"{name} needs an LLM ([requirements] llm = true); pass --backend/--model", \
            "config"
        return outcome
    run_dir: Path | None = None
    existed = False
    method: SandboxedMethod | None = None
    try:
        method = SandboxedMethod(sub.folder, name, limits=limits, snapshot=snapshot)
        env = MethodEnv(seed=seed, llm=llm if sub.requirements.llm else None, show_progress=show_progress)
        run_dir = default_run_dir(out_root, method, benchmark, env, n_users=n_users)
        existed = (run_dir / "results.json").exists()
        chunk = {"chunk_size": chunk_size} if chunk_size else {}
        results = run_evaluation(method, benchmark, env, run_dir, n_users=n_users, resume=False,
                                 resamples=resamples, command=command, show_progress=show_progress, **chunk)
    except MethodError as exc:  # SandboxError, SubmissionError and the harness's own checks of the output
        outcome.error, outcome.kind = f"{exc}\n({DISCARDED})", getattr(exc, "kind", "bad-output")
        _discard(run_dir, existed)
        return outcome
    except Exception as exc:  # noqa: BLE001 - one broken run must not stop the others; it is reported
        outcome.error, outcome.kind = f"internal error while scoring: {type(exc).__name__}: {exc}\n({DISCARDED})", \
            "internal"
        _discard(run_dir, existed)
        return outcome
    finally:
        if method is not None:
            method.close()
    outcome.status, outcome.run_dir, outcome.results = results["status"], run_dir, results
    return outcome


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
