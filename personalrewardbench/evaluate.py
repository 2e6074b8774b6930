"""Run a method on a benchmark: label-free queries, chunked prediction, scoring, results.

The harness owns splitting, ordering, scoring and saving; a method owns its logic.
A test pair reaches a method only as two :class:`Query` objects (chosen shown first,
chosen shown second) with opaque ids; which is which lives in a private key table
(:class:`QueryKey`) that only the evaluator holds. Query ids are HMACs of (pair id,
order) under a random secret drawn for each run and kept only in the run folder
(:mod:`personalrewardbench.query_keys`), so they are stable across resumes and batch
sizes, yet cannot be recomputed from anything a method is given.
The query list is sorted by id: its order says nothing about the data order or labels.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from personalrewardbench.benchmark_lookup import dataset_location
from personalrewardbench.data.schema import Benchmark, Query
from personalrewardbench.degradation import degradation_section, llm_counters
from personalrewardbench.methods import Method, MethodEnv, MethodError, MethodInfo
from personalrewardbench.query_keys import QUERY_KEY_FILE, QueryKey, make_queries, query_id_for, run_secret
from personalrewardbench.results import (
    ARTIFACTS_FILE,
    PREDICTIONS_FILE,
    PROGRESS_FILE,
    RESULTS_FILE,
    RUN_FILE,
    SCHEMA_VERSION,
    SEAL_FILE,
    PredictionLog,
    file_hashes,
    now_utc,
    prediction_bytes,
    provenance,
    read_json,
    write_json_atomic,
)
from personalrewardbench.run_progress import ProgressBook
from personalrewardbench.scoring import ScoringError, check_probability, paired_comparison, score
from personalrewardbench.seal import check_seal, load_key, seal_run

__all__ = ["QueryKey", "make_queries", "paired_comparison", "query_id_for", "run_evaluation", "score",
           "select_users"]

DEFAULT_CHUNK = 256
DEFAULT_RESAMPLES = 1000
USAGE_FIELDS = ("calls", "prompt_tokens", "completion_tokens", "cache_hits", "seconds")


def _hash_int(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("\0".join(map(str, parts)).encode()).digest()[:8], "big")


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` (0 <= i < n) -> (i, n)."""
    if text in (None, ""):
        return None
    try:
        i, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise MethodError(f"--shard {text!r}: write i/n with whole numbers, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise MethodError(f"--shard {text!r}: need 0 <= i < n (shards are numbered from 0)")
    return i, n


def select_users(benchmark: Benchmark, *, n_users: int | None = None, shard: tuple[int, int] | None = None,
                 seed: int = 0, user_ids: Sequence[str] | None = None) -> list[str]:
    """The users a run evaluates, sorted by id.

    ``n_users``: a seeded sample (users ranked by a hash of seed and id), ``user_ids``: an
    explicit list; ``shard=(i, n)``: every n-th of those users, starting at i.
    """
    users = benchmark.user_ids()
    if user_ids is not None:
        missing = sorted(set(user_ids) - set(users))
        if missing:
            raise MethodError(f"users not in benchmark {benchmark.name}: {', '.join(missing[:5])}")
        users = sorted(set(user_ids))
    if n_users is not None:
        if n_users < 1:
            raise MethodError(f"--users {n_users}: need at least 1")
        users = sorted(sorted(users, key=lambda u: (_hash_int("prb-users", seed, u), u))[:n_users])
    if shard is not None:
        users = users[shard[0]::shard[1]]
    return users


def users_note(benchmark: Benchmark, n_users: int | None) -> str | None:
    """A line saying that ``--users n_users`` asks for more users than ``benchmark`` has (None if not)."""
    have = len(benchmark.user_ids())
    if n_users is not None and n_users > have:
        return (f"--users {n_users}: {benchmark.name} has only {have} users; evaluating all {have} "
                "(--users all says so explicitly)")
    return None


def user_extra(benchmark: Benchmark, users: Sequence[str]) -> dict[str, dict[str, int]]:
    """n_train / n_val per user (recorded next to per-user accuracies)."""
    out = {u: {"n_train": 0, "n_val": 0} for u in users}
    for p in benchmark.pairs:
        if p.user_id in out and p.split in ("train", "val"):
            out[p.user_id][f"n_{p.split}"] += 1
    return out


def compute_figures(predictions: Sequence[Mapping[str, Any]], benchmark: Benchmark, users: Sequence[str],
                    *, resamples: int, seed: int) -> dict[str, Any]:
    """scores + per_user as stored in results.json (the one function `prb verify` reruns)."""
    return score(predictions, users=users, resamples=resamples, seed=seed, user_extra=user_extra(benchmark, users))


def not_applicable_reason(method: Method, benchmark: Benchmark) -> str | None:
    if "profile" in method.capabilities and not benchmark.has_profiles():
        return (f"method {method.name} needs user profiles (capability 'profile'); "
                f"dataset {benchmark.name} has none for the selected users")
    return None


def _run_fingerprint(method: Method, benchmark: Benchmark, users: Sequence[str], seed: int, llm: Any) -> dict[str, Any]:
    return {
        "method": method.name,
        "config": method.get_config(),
        "content_hash": benchmark.content_hash,
        "selected_users": list(users),
        "seed": seed,
        "llm_identity": getattr(llm, "identity", None) if llm is not None else None,
    }


def run_id_for(fingerprint: Mapping[str, Any], n_users: int | None, shard: tuple[int, int] | None) -> str:
    digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()[:8]
    parts = [f"s{fingerprint['seed']}"]
    if n_users is not None:
        parts.append(f"u{n_users}")
    if shard is not None:
        parts.append(f"shard{shard[0]}of{shard[1]}")
    return "-".join([*parts, digest])


def default_run_dir(out_root: Path, method: Method, benchmark: Benchmark, env: MethodEnv, *,
                    n_users: int | None = None, shard: tuple[int, int] | None = None) -> Path:
    """``out_root/<dataset>/<method>/<run-id>``; the run id is deterministic, so rerunning the
    same command finds the same folder and resumes."""
    selected = select_users(benchmark, n_users=n_users, shard=shard, seed=env.seed)
    fp = _run_fingerprint(method, benchmark.subset(selected), selected, env.seed, env.llm)
    return Path(out_root) / benchmark.name / method.name / run_id_for(fp, n_users, shard)


def _usage_snapshot(llm: Any) -> dict[str, float]:
    """Cost fields plus every degradation counter of the LLM (keys ``llm.<name>``)."""
    usage = getattr(llm, "usage", None)
    snap = {f: float(getattr(usage, f, 0) or 0) for f in USAGE_FIELDS}
    snap.update({f"llm.{k}": v for k, v in llm_counters(llm).items()})
    return snap


def _validate_chunk(values: Any, chunk: Sequence[Query], method_name: str, offset: int) -> list[float | None]:
    try:
        values = list(values)
    except TypeError:
        raise MethodError(f"method {method_name}: predict() returned {type(values).__name__}, not a sequence") from None
    if len(values) != len(chunk):
        raise MethodError(f"method {method_name}: predict() returned {len(values)} predictions for "
                          f"{len(chunk)} queries; return exactly one value per query, in order")
    out = []
    for k, (v, q) in enumerate(zip(values, chunk, strict=True)):
        try:
            out.append(check_probability(v, f"method {method_name}, query {offset + k + 1} ({q.query_id})"))
        except ScoringError as exc:
            raise MethodError(str(exc)) from None
    return out


def _method_section(method: Method, info: MethodInfo | None, llm: Any) -> dict[str, Any]:
    # No "tier": the leaderboard gives a run its tier from where the run folder sits, which the harness
    # does not know when it writes (files of older runs may still hold the field; nothing reads it)
    return {
        "name": method.name,
        "config": method.get_config(),
        "capabilities": sorted(method.capabilities),
        "source": info.source if info else f"{type(method).__module__}:{type(method).__qualname__}",
        "base_model": getattr(method, "base_model", None) or (getattr(llm, "identity", None) if llm else None),
    }


def _open_run(out_dir: Path, fingerprint: dict[str, Any], resume: bool) -> None:
    """Prepare ``out_dir``: clear it unless ``resume``; refuse to resume a folder of another run.
    What a resumed folder may keep is decided by :class:`~personalrewardbench.run_progress.ProgressBook`."""
    run_file = out_dir / RUN_FILE
    if out_dir.exists() and not resume:
        for name in (PREDICTIONS_FILE, ARTIFACTS_FILE, RESULTS_FILE, RUN_FILE, PROGRESS_FILE, QUERY_KEY_FILE,
                     SEAL_FILE):
            (out_dir / name).unlink(missing_ok=True)
    if resume and run_file.exists():
        saved = read_json(run_file)
        diff = sorted(k for k in fingerprint if json.dumps(saved.get(k), sort_keys=True, default=str)
                      != json.dumps(fingerprint[k], sort_keys=True, default=str))
        if diff:
            raise MethodError(f"{out_dir} holds a different run (differs in: {', '.join(diff)}); "
                              "rerun with --no-resume to overwrite it, or pick another --out")
        return
    if resume and (out_dir / PREDICTIONS_FILE).exists():
        raise MethodError(f"{out_dir} has predictions but no {RUN_FILE}; rerun with --no-resume to overwrite it")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_file, fingerprint)


def run_evaluation(
    method: Method,
    benchmark: Benchmark,
    env: MethodEnv | None,
    out_dir: Path | str,
    *,
    seed: int | None = None,
    users: Sequence[str] | None = None,
    n_users: int | None = None,
    shard: tuple[int, int] | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    resume: bool = True,
    resamples: int = DEFAULT_RESAMPLES,
    command: str | None = None,
    show_progress: bool = True,
    dataset_spec: str | None = None,
) -> dict[str, Any]:
    """Fit ``method`` on the selected users' histories, predict their test queries in chunks
    (appending each to predictions.jsonl), score, and write the run folder ``out_dir``.

    A rerun with ``resume`` skips queries already predicted, keeping only what this harness
    wrote and recorded under the seal key (:mod:`personalrewardbench.run_progress`; anything
    else is discarded, predicted again and reported on stderr). ``dataset_spec`` (what
    ``--dataset`` named: a benchmark name or a local path) is recorded so ``prb verify``
    can find the benchmark again. The finished folder is sealed (:mod:`personalrewardbench.seal`).
    Returns the results dict. Raises SealError (before any work) when no usable seal key exists.
    """
    from tqdm.auto import tqdm

    if chunk_size < 1:
        raise MethodError(f"chunk size {chunk_size}: need at least 1 query per predict() call")
    env = env or MethodEnv()
    seed = env.seed if seed is None else seed
    env.seed = seed
    out_dir = Path(out_dir)
    started_at = now_utc()
    t0 = time.perf_counter()
    selected = select_users(benchmark, n_users=n_users, shard=shard, seed=seed, user_ids=users)
    bench = benchmark.subset(selected)
    fingerprint = _run_fingerprint(method, bench, selected, seed, env.llm)
    key = load_key()
    if resume:
        from personalrewardbench.results import finished_results

        finished = finished_results(out_dir, fingerprint, resamples=resamples, seed=seed)
        if finished is not None and check_seal(out_dir, key).ok:  # reused as is: no refit, rewrite or new times
            return finished
    _open_run(out_dir, fingerprint, resume)
    book = ProgressBook.open(out_dir, key, fingerprint)
    if book.state.note:
        print(f"prb: note: {book.state.note}", file=sys.stderr)
    progress = book.state.totals
    info = getattr(method, "method_info", None)
    test_pairs = sorted(bench.pairs_of("test"), key=lambda p: p.pair_id)
    results: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run_id": out_dir.name,
        "status": "ok",
        "not_applicable_reason": None,
        "method": _method_section(method, info, env.llm),
        "dataset": {
            "name": benchmark.name,
            "content_hash": benchmark.content_hash,
            "synthetic": benchmark.manifest.synthetic,
            "manifest": benchmark.manifest.to_dict(),
            "n_users": len(selected),
            "n_test_pairs": len(test_pairs),
            "selected_users": selected,
            "shard": f"{shard[0]}/{shard[1]}" if shard else None,
            "location": dataset_location(dataset_spec),
        },
    }
    log = PredictionLog(out_dir / PREDICTIONS_FILE)
    reason = not_applicable_reason(method, bench)
    usage0 = _usage_snapshot(env.llm)
    seconds_fit = seconds_predict = 0.0
    if reason:
        results.update(status="not_applicable", not_applicable_reason=reason, scores=None, per_user={})
        log.rewrite([])
        write_json_atomic(out_dir / ARTIFACTS_FILE, {})
    else:
        # keyed by the run's random secret (drawn now, or re-read from the run folder on resume)
        pred_path = out_dir / PREDICTIONS_FILE
        secret = run_secret(out_dir, has_predictions=pred_path.exists() and pred_path.stat().st_size > 0)
        book.wrote(QUERY_KEY_FILE)
        _save_progress(book, progress, env.llm, usage0, seconds_fit, seconds_predict, t0)
        queries, keys = make_queries(test_pairs, secret)
        done = {r["query_id"]: r for r in log.read(repair=True)}
        unknown = sorted(set(done) - set(keys))
        if unknown:
            raise MethodError(f"{log.path}: {len(unknown)} predictions for unknown queries (e.g. {unknown[0]}); "
                              "rerun with --no-resume")
        todo = [q for q in queries if q.query_id not in done]
        artifacts_path = out_dir / ARTIFACTS_FILE
        need_fit = bool(todo) or not book.state.artifacts_ok
        method.setup(env)
        if need_fit:
            t = time.perf_counter()
            method.fit(bench.histories())
            seconds_fit = time.perf_counter() - t
            _write_artifacts(method, artifacts_path)
            book.wrote(ARTIFACTS_FILE)
            _save_progress(book, progress, env.llm, usage0, seconds_fit, seconds_predict, t0)
        bar = tqdm(total=len(queries), initial=len(queries) - len(todo), desc=f"{method.name} predict",
                   unit="q", disable=None if show_progress else True)
        try:
            for start in range(0, len(todo), max(1, chunk_size)):
                chunk = todo[start:start + chunk_size]
                t = time.perf_counter()
                values = _validate_chunk(method.predict(chunk), chunk, method.name,
                                         len(queries) - len(todo) + start)
                seconds_predict += time.perf_counter() - t
                recs = []
                for q, v in zip(chunk, values, strict=True):
                    k = keys[q.query_id]
                    recs.append({"query_id": q.query_id, "pair_id": k.pair_id, "user_id": k.user_id,
                                 "order": k.order, "p": v})
                book.appended(log.append(recs))
                _save_progress(book, progress, env.llm, usage0, seconds_fit, seconds_predict, t0)
                bar.update(len(chunk))
        finally:
            bar.close()
        if need_fit:  # a method may add artifacts while predicting
            _write_artifacts(method, artifacts_path)
            book.wrote(ARTIFACTS_FILE)
        predictions = sorted(log.read(), key=lambda r: r["query_id"])
        book.rewrite_sorted(prediction_bytes(predictions),
                            _save_progress(book, progress, env.llm, usage0, seconds_fit, seconds_predict, t0))
        results.update(compute_figures(predictions, bench, selected, resamples=resamples, seed=seed))
    if reason:
        book.wrote(ARTIFACTS_FILE)
    total = _save_progress(book, progress, env.llm, usage0, seconds_fit, seconds_predict, t0)
    n_j = (results.get("scores") or {}).get("n_judgments") or 0
    tokens = total["prompt_tokens"] + total["completion_tokens"]
    seconds_total = total["seconds_total"]
    results["cost"] = {
        "llm_calls": int(total["calls"]),
        "prompt_tokens": int(total["prompt_tokens"]),
        "completion_tokens": int(total["completion_tokens"]),
        "cache_hits": int(total["cache_hits"]),
        "llm_seconds": round(total["seconds"], 4),
        "seconds_fit": round(total["seconds_fit"], 4),
        "seconds_predict": round(total["seconds_predict"], 4),
        "seconds_total": round(seconds_total, 4),
        "tokens_per_1000_judgments": round(1000 * tokens / n_j, 2) if n_j else None,
        "seconds_per_1000_judgments": round(1000 * seconds_total / n_j, 4) if n_j else None,
        "resumed": book.state.resumed,
        "discarded_on_resume": book.state.discarded,
    }
    try:
        results["method_usage"] = dict(method.usage() or {})
    except Exception as exc:  # noqa: BLE001 - the method's own counters must not sink a finished run
        results["method_usage"] = {"error": f"usage() failed: {exc}"}
    results["degradation"] = degradation_section({k[4:]: v for k, v in total.items() if k.startswith("llm.")},
                                                 results["method_usage"], results.get("scores"))
    results["provenance"] = provenance(method=method, llm=env.llm, seed=seed, command=command, started_at=started_at)
    results["files"] = file_hashes(out_dir)
    write_json_atomic(out_dir / RESULTS_FILE, results)
    seal_run(out_dir)
    return results


def _write_artifacts(method: Method, path: Path) -> None:
    artifacts = method.artifacts() or {}
    if not isinstance(artifacts, Mapping):
        raise MethodError(f"method {method.name}: artifacts() returned {type(artifacts).__name__}, not a mapping "
                          "of user_id -> text")
    write_json_atomic(path, {str(k): str(v) for k, v in sorted(artifacts.items(), key=lambda kv: str(kv[0]))})


def _save_progress(book: ProgressBook, before: Mapping[str, Any], llm: Any, usage0: Mapping[str, float],
                   seconds_fit: float, seconds_predict: float, t0: float) -> dict[str, float]:
    """Cumulative cost over this and earlier (interrupted) invocations, saved (with the harness's record of
    the folder, under the seal key) after each step; returns the totals."""
    now = _usage_snapshot(llm)
    names = [*USAGE_FIELDS, *sorted({k for k in (*now, *before) if k.startswith("llm.")})]
    total = {f: float(before.get(f, 0.0)) + now.get(f, 0.0) - usage0.get(f, 0.0) for f in names}
    total["seconds_fit"] = float(before.get("seconds_fit", 0.0)) + seconds_fit
    total["seconds_predict"] = float(before.get("seconds_predict", 0.0)) + seconds_predict
    total["seconds_total"] = float(before.get("seconds_total", 0.0)) + time.perf_counter() - t0
    book.save(total)
    return total
