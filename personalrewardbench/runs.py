"""Operations on finished run folders: verify, merge (shards), compare (paired).

``verify_run`` recomputes every figure of a results.json from its predictions.jsonl
and the benchmark with the same function ``prb evaluate`` used, checks the sha256 of
each file recorded in results.json, checks that the predictions cover exactly the
benchmark's test pairs (both orders, with the opaque ids that the run's own query secret
in ``query-key.json`` gives; a merged run keeps one secret per shard), and flags results
produced on a different benchmark version. It returns one line per problem.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from personalrewardbench.data.schema import Benchmark
from personalrewardbench.degradation import merge_degradation
from personalrewardbench.query_keys import KeyEntry, QueryKeyError, keys_for_run, read_key_file, write_key_file
from personalrewardbench.results import (
    ARTIFACTS_FILE,
    HASHED_FILES,
    PREDICTIONS_FILE,
    RESULTS_FILE,
    PredictionLog,
    ResultsError,
    file_hashes,
    now_utc,
    read_json,
    read_predictions,
    read_results,
    sha256_file,
    write_json_atomic,
)
from personalrewardbench.scoring import ORDERS, ScoringError, check_probability, paired_comparison, score
from personalrewardbench.seal import check_seal, seal_run

FLOAT_TOL = 1e-9


def _diff(path: str, recorded: Any, recomputed: Any, out: list[str]) -> None:
    """Append a line for every leaf of ``recomputed`` that ``recorded`` does not match."""
    if isinstance(recomputed, Mapping):
        if not isinstance(recorded, Mapping):
            out.append(f"{path}: recorded {recorded!r}, recomputed a table")
            return
        for k in sorted(set(recomputed) | set(recorded)):
            if k not in recorded:
                out.append(f"{path}.{k}: missing from results.json (recomputed {recomputed[k]!r})")
            elif k not in recomputed:
                out.append(f"{path}.{k}: in results.json ({recorded[k]!r}) but not recomputable from predictions")
            else:
                _diff(f"{path}.{k}", recorded[k], recomputed[k], out)
    elif isinstance(recomputed, list):
        if not isinstance(recorded, list) or len(recorded) != len(recomputed):
            out.append(f"{path}: recorded {recorded!r}, recomputed {recomputed!r}")
            return
        for i, (a, b) in enumerate(zip(recorded, recomputed, strict=True)):
            _diff(f"{path}[{i}]", a, b, out)
    elif isinstance(recomputed, float) and isinstance(recorded, (int, float)) and not isinstance(recorded, bool):
        if not math.isclose(recorded, recomputed, rel_tol=FLOAT_TOL, abs_tol=FLOAT_TOL):
            out.append(f"{path}: recorded {recorded!r}, recomputed {recomputed!r}")
    elif recorded != recomputed or type(recorded) is bool and type(recomputed) is not bool:
        out.append(f"{path}: recorded {recorded!r}, recomputed {recomputed!r}")


def _check_lines(preds: Sequence[Mapping[str, Any]], where: Path) -> list[str]:
    problems: list[str] = []
    seen_q: set[str] = set()
    for i, r in enumerate(preds, start=1):
        missing = [k for k in ("query_id", "pair_id", "user_id", "order", "p") if k not in r]
        if missing:
            problems.append(f"{where}: line {i} lacks {', '.join(missing)}")
            continue
        if r["order"] not in ORDERS:
            problems.append(f"{where}: line {i}: order {r['order']!r} is not one of {ORDERS}")
        try:
            check_probability(r["p"], f"{where}: line {i}")
        except ScoringError as exc:
            problems.append(str(exc))
        if r["query_id"] in seen_q:
            problems.append(f"{where}: line {i}: query {r['query_id']} appears twice")
        seen_q.add(r["query_id"])
    return problems


def _check_coverage(preds: Sequence[Mapping[str, Any]], bench: Benchmark, users: Sequence[str], run_dir: Path,
                    where: Path) -> list[str]:
    """Predictions cover exactly the run's test queries, with the ids its query secret(s) give."""
    sub = bench.subset(users)
    by_user: dict[str, list[Any]] = {}
    for p in sub.pairs_of("test"):
        by_user.setdefault(p.user_id, []).append(p)
    try:
        keys = keys_for_run(read_key_file(run_dir), by_user, users)
    except QueryKeyError as exc:
        return [str(exc)]
    problems: list[str] = []
    got: set[str] = set()
    for i, r in enumerate(preds, start=1):
        k = keys.get(r.get("query_id"))
        got.add(r.get("query_id"))
        if k is None:
            problems.append(f"{where}: line {i}: query {r.get('query_id')} is not a query of this run (benchmark and "
                            "query secret)")
        elif (k.pair_id, k.user_id, k.order) != (r.get("pair_id"), r.get("user_id"), r.get("order")):
            problems.append(f"{where}: line {i}: query {r['query_id']} is pair {k.pair_id} ({k.order}) of user "
                            f"{k.user_id}, not pair {r.get('pair_id')} ({r.get('order')}) of user {r.get('user_id')}")
    missing = sorted(set(keys) - got)
    if missing:
        problems.append(f"{where}: {len(missing)} test queries have no prediction (e.g. pair {keys[missing[0]].pair_id} "
                        f"{keys[missing[0]].order})")
    return problems


def verify_run(run_dir: Path | str, benchmark: Benchmark | None = None) -> list[str]:
    """Every problem found in ``run_dir`` (empty list: all figures reproduce).

    Without ``benchmark`` only what predictions alone determine is checked (file hashes,
    scores, per-user accuracies); n_train/n_val and coverage need the benchmark.
    """
    run_dir = Path(run_dir)
    try:
        res = read_results(run_dir)
    except ResultsError as exc:
        return [str(exc)]
    try:
        return _verify(run_dir, res, benchmark)
    except (ResultsError, ScoringError) as exc:
        return [str(exc)]
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RecursionError) as exc:
        return [f"{run_dir / RESULTS_FILE}: not a results file this harness writes ({type(exc).__name__}: "
                f"{str(exc)[:160]})"]


def _verify(run_dir: Path, res: dict[str, Any], benchmark: Benchmark | None) -> list[str]:
    problems: list[str] = []
    files = res.get("files") or {}
    if not isinstance(files, Mapping):
        return [f"{run_dir / RESULTS_FILE}: files is not a table of file name -> sha256"]
    for name, recorded in sorted(files.items()):
        path = run_dir / name
        if name not in HASHED_FILES:
            problems.append(f"{run_dir / RESULTS_FILE}: files.{name}: not a file a run writes")
        elif not path.exists() and not path.is_symlink():
            problems.append(f"{path}: missing (results.json records sha256 {str(recorded)[:12]}...)")
        elif sha256_file(path) != recorded:
            problems.append(f"{path}: sha256 differs from the one recorded in results.json (the file changed after the run)")
    for name in (PREDICTIONS_FILE, ARTIFACTS_FILE):
        if name not in files:
            problems.append(f"{run_dir / RESULTS_FILE}: files.{name} (its sha256) is not recorded")
    try:
        preds = read_predictions(run_dir)
        artifacts = read_json(run_dir / ARTIFACTS_FILE)
    except ResultsError as exc:
        return [*problems, str(exc)]
    if not isinstance(artifacts, dict):
        problems.append(f"{run_dir / ARTIFACTS_FILE}: not a JSON object of user_id -> text")
    pred_path = run_dir / PREDICTIONS_FILE
    line_problems = _check_lines(preds, pred_path)
    if line_problems:
        return problems + line_problems
    ds = res.get("dataset") or {}
    users = list(ds.get("selected_users") or [])
    seed = int((res.get("provenance") or {}).get("seed", 0))  # the bootstrap's default seed
    if benchmark is not None and benchmark.content_hash != ds.get("content_hash"):
        problems.append(f"benchmark version differs: {run_dir} was produced on {ds.get('name')} content hash "
                        f"{str(ds.get('content_hash'))[:12]}..., the benchmark given has {benchmark.content_hash[:12]}...; "
                        "re-evaluate on this version or verify against the original")
        benchmark = None
    if res.get("status") == "not_applicable":
        if preds:
            problems.append(f"{pred_path}: a not_applicable run has {len(preds)} predictions")
        if res.get("scores") is not None:
            problems.append(f"{run_dir / RESULTS_FILE}: scores: a not_applicable run carries scores")
        return problems
    recorded_users = res.get("per_user") or {}
    if benchmark is not None:
        problems += _check_coverage(preds, benchmark, users, run_dir, pred_path)
        extra = None
    else:
        extra = {u: {f: row[f] for f in ("n_train", "n_val") if f in row} for u, row in recorded_users.items()}
    boot = ((res.get("scores") or {}).get("bootstrap") or {})
    try:
        if benchmark is not None:
            from personalrewardbench.evaluate import compute_figures

            figures = compute_figures(preds, benchmark.subset(users), users, resamples=int(boot.get("resamples", 1000)),
                                      seed=int(boot.get("seed", seed)))
        else:
            figures = score(preds, users=users, resamples=int(boot.get("resamples", 1000)),
                            seed=int(boot.get("seed", seed)), user_extra=extra)
    except (ScoringError, KeyError, ValueError) as exc:
        return [*problems, f"{pred_path}: cannot be scored: {exc}"]
    _diff("scores", res.get("scores"), figures["scores"], problems)
    _diff("per_user", recorded_users, figures["per_user"], problems)
    n_test = len({r["pair_id"] for r in preds})
    _diff("dataset", {"n_users": ds.get("n_users"), "n_test_pairs": ds.get("n_test_pairs")},
          {"n_users": len(users), "n_test_pairs": n_test}, problems)
    if set(figures["per_user"]) != set(users):
        problems.append(f"{pred_path}: predictions name users outside dataset.selected_users")
    judged = ((res.get("degradation") or {}).get("judgments")) if isinstance(res.get("degradation"), Mapping) else None
    if judged is not None:
        s = figures["scores"]
        _diff("degradation.judgments", {k: judged.get(k) for k in ("n_judgments", "n_failed", "n_ties")},
              {"n_judgments": s["n_judgments"], "n_failed": s["n_failed"], "n_ties": s["n_ties"]}, problems)
    return problems


# ------------------------------------------------------------------ merge


def _shard_of(res: Mapping[str, Any], where: Path) -> tuple[int, int]:
    shard = (res.get("dataset") or {}).get("shard")
    try:
        i, n = (int(x) for x in str(shard).split("/"))
    except ValueError:
        raise ResultsError(f"{where}: not a shard result (dataset.shard is {shard!r})") from None
    return i, n


def merge_runs(run_dirs: Sequence[Path | str], out_dir: Path | str, *, command: str | None = None) -> dict[str, Any]:
    """Join shard runs (``--shard i/n``, every i present once) into one run folder.

    The result does not depend on the order of ``run_dirs``: shards are sorted by index,
    predictions by query id, and every figure is recomputed from the joined predictions.
    """
    out_dir = Path(out_dir)
    loaded = []
    for d in map(Path, run_dirs):
        res = read_results(d)
        if res.get("status") != "ok":
            raise ResultsError(f"{d}: status {res.get('status')!r}; only finished runs can be merged")
        shard = _shard_of(res, d)  # what the folder is comes first: a run that is not a shard is named as such
        seal = check_seal(d)  # the merged run is sealed: never seal what this key did not seal
        if not seal.ok:
            raise ResultsError(f"{d}: {'unsealed' if seal.status == 'unsealed' else 'bad seal'} ({seal.detail}); "
                               "only shards sealed with this machine's key can be merged: set PRB_SEAL_KEY (or "
                               "PRB_CACHE_DIR) to the key that sealed them, or rerun the shard")
        problems = verify_run(d)
        if problems:
            raise ResultsError(f"{d}: does not verify, refusing to merge: {problems[0]}")
        loaded.append((shard, d, res))
    if not loaded:
        raise ResultsError("nothing to merge; name the shard run folders")
    loaded.sort(key=lambda t: t[0])
    n = loaded[0][0][1]
    first = loaded[0][2]
    for (i, n_i), d, res in loaded:
        for path in (("method", "name"), ("method", "config"), ("dataset", "content_hash"), ("provenance", "seed"),
                     ("provenance", "llm_identity"), ("scores", "bootstrap")):
            if res[path[0]].get(path[1]) != first[path[0]].get(path[1]):
                raise ResultsError(f"{d}: {'.'.join(path)} differs from {loaded[0][1]}; shards must come from one run setup")
        if n_i != n:
            raise ResultsError(f"{d}: shard {i}/{n_i} does not belong to a split into {n}")
    got = [i for (i, _), _, _ in loaded]
    if got != list(range(n)):
        missing = sorted(set(range(n)) - set(got))
        dup = sorted({i for i in got if got.count(i) > 1})
        raise ResultsError(f"shards to merge: missing {missing or 'none'}, duplicated {dup or 'none'} (of {n})")
    preds: list[dict[str, Any]] = []
    artifacts: dict[str, str] = {}
    users: list[str] = []
    extra: dict[str, dict[str, Any]] = {}
    key_entries: list[KeyEntry] = []  # each shard drew its own query secret: keep each with its users
    for _, d, res in loaded:
        key_entries += [KeyEntry(e.secret, tuple(res["dataset"]["selected_users"]) if e.users is None else e.users)
                        for e in read_key_file(d)]
        preds += read_predictions(d)
        artifacts.update(read_json(d / ARTIFACTS_FILE))
        users += res["dataset"]["selected_users"]
        extra.update({u: {f: r[f] for f in ("n_train", "n_val") if f in r} for u, r in res["per_user"].items()})
    if len(set(users)) != len(users):
        raise ResultsError("shards overlap in users; they must come from one --shard i/n split")
    preds.sort(key=lambda r: r["query_id"])
    boot = first["scores"]["bootstrap"]
    figures = score(preds, users=users, resamples=boot["resamples"], seed=boot["seed"], user_extra=extra)
    cost = _sum_costs([res["cost"] for _, _, res in loaded], figures["scores"]["n_judgments"])
    degradation = merge_degradation([res.get("degradation") for _, _, res in loaded], figures["scores"])
    merged = {
        **{k: first[k] for k in ("schema_version", "status", "not_applicable_reason", "method")},
        "run_id": out_dir.name,
        "dataset": {**first["dataset"], "selected_users": sorted(users), "n_users": len(users),
                    "n_test_pairs": sum(r["dataset"]["n_test_pairs"] for _, _, r in loaded), "shard": None},
        **figures,
        "cost": cost,
        "method_usage": {"shards": {f"{i}/{n}": res.get("method_usage") for (i, _), _, res in loaded}},
        "degradation": degradation,
        "provenance": {**first["provenance"],
                       "started_at": min(r["provenance"]["started_at"] for _, _, r in loaded),
                       "finished_at": max(r["provenance"]["finished_at"] for _, _, r in loaded),
                       "merged_from": [{"shard": f"{i}/{n}", "run_id": r["run_id"],
                                        "command": r["provenance"].get("command"),
                                        "git_commit": r["provenance"].get("git_commit")} for (i, _), _, r in loaded],
                       "merge_command": command, "merged_at": now_utc()},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    PredictionLog(out_dir / PREDICTIONS_FILE).rewrite(preds)
    write_key_file(out_dir, key_entries)
    write_json_atomic(out_dir / ARTIFACTS_FILE, dict(sorted(artifacts.items())))
    merged["files"] = file_hashes(out_dir)
    write_json_atomic(out_dir / RESULTS_FILE, merged)
    seal_run(out_dir)
    return merged


def _sum_costs(costs: Sequence[Mapping[str, Any]], n_judgments: int) -> dict[str, Any]:
    keys = ("llm_calls", "prompt_tokens", "completion_tokens", "cache_hits", "llm_seconds", "seconds_fit",
            "seconds_predict", "seconds_total")
    out: dict[str, Any] = {k: round(sum(c.get(k) or 0 for c in costs), 4) for k in keys}
    tokens = out["prompt_tokens"] + out["completion_tokens"]
    out["tokens_per_1000_judgments"] = round(1000 * tokens / n_judgments, 2) if n_judgments else None
    out["seconds_per_1000_judgments"] = round(1000 * out["seconds_total"] / n_judgments, 4) if n_judgments else None
    out["resumed"] = any(c.get("resumed") for c in costs)
    return out


# ------------------------------------------------------------------ compare


def compare_runs(a: Path | str, b: Path | str, *, resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Paired comparison of two runs on the judgments they share (same benchmark version required).

    ResultsError when a path is not a run folder (naming the run folders found under it), when a
    run is not applicable (it has no predictions), or when the benchmark versions differ."""
    ra, rb = _scored_run(a), _scored_run(b)
    ha, hb = ra["dataset"]["content_hash"], rb["dataset"]["content_hash"]
    if ha != hb:
        raise ResultsError(f"{a} and {b} were scored on different benchmark versions ({ha[:12]}... vs {hb[:12]}...); "
                           "paired comparison needs the same pairs")
    out = paired_comparison(read_predictions(Path(a)), read_predictions(Path(b)), resamples=resamples, seed=seed)
    return {"a": ra["method"]["name"], "b": rb["method"]["name"], "dataset": ra["dataset"]["name"], **out}


def check_run_folder(path: Path | str) -> Path:
    """``path`` as a run folder (one holding results.json); ResultsError otherwise, naming the run folders
    found below it (a method or dataset folder given instead of one of its runs) or saying what to pass."""
    from personalrewardbench.results import RESULTS_FILE, find_runs, unmatched_pattern

    p = Path(path)
    if problem := unmatched_pattern(p):
        raise ResultsError(problem)
    if p.is_dir() and not (p / RESULTS_FILE).exists():
        runs = find_runs([p])
        if runs:
            shown = ", ".join(str(r) for r in runs[:4]) + (f" and {len(runs) - 4} more" if len(runs) > 4 else "")
            raise ResultsError(f"{p} is not a run folder (it has no {RESULTS_FILE}); the run folders under it are "
                               f"{shown}: pass one of them")
        raise ResultsError(f"{p}: no {RESULTS_FILE} here or below; pass a run folder "
                           "(<results>/<dataset>/<method>/<run-id>)")
    if p.exists() and not p.is_dir() and p.name != RESULTS_FILE:
        raise ResultsError(f"{p}: is a file, not a run folder; pass a run folder (<results>/<dataset>/<method>/<run-id>)")
    return p


def _scored_run(path: Path | str) -> dict[str, Any]:
    """results.json of the run folder ``path``, which must hold predictions (see :func:`compare_runs`)."""
    p = check_run_folder(path)
    res = read_results(p)
    if res.get("status") == "not_applicable":
        raise ResultsError(f"{p}: the run of {res.get('method', {}).get('name')} is not applicable "
                           f"({res.get('not_applicable_reason') or 'no reason recorded'}) and has no predictions to "
                           "compare; compare two runs that were scored")
    return res
