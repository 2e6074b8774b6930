"""Find results folders without following links, check each results.json's shape, load what the board shows.

Everything read here is untrusted (a results folder may come from a submission):
files are opened only as regular files (``O_NOFOLLOW``, size-capped), linked
folders are never entered, and any file that fails a check is skipped with its
path and reason while the build goes on. Whether a run becomes a row at all
(sealed, verified, tier from its origin) is decided in
:mod:`personalrewardbench.leaderboard.verification`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from personalrewardbench.results import (
    ARTIFACTS_FILE,
    PREDICTIONS_FILE,
    RESULTS_FILE,
    SCHEMA_VERSION,
    SEAL_FILE,
    ResultsError,
    read_json,
    scan_folders,
)

TIERS = ("reproduced", "submitted", "local", "reported")
RUN_FILES = (RESULTS_FILE, PREDICTIONS_FILE, ARTIFACTS_FILE, SEAL_FILE)
MAX_RESULTS_BYTES = 64 << 20
MAX_ARTIFACT_CHARS = 20_000


class SchemaProblem(ValueError):
    """A results.json that the leaderboard cannot show; the message names the field."""


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class RunResult:
    """One verified results folder (or one reported row), as the leaderboard uses it."""

    dataset: str
    method: str
    tier: str
    base_model: str | None
    status: str  # "ok" | "not_applicable"
    not_applicable_reason: str | None = None
    synthetic: bool = False
    scores: Mapping[str, Any] = field(default_factory=dict)
    cost: Mapping[str, Any] = field(default_factory=dict)
    per_user: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = None
    run_id: str = ""
    path: str | None = None  # results folder as shown (relative to the working directory where possible)
    artifacts: Mapping[str, str] = field(default_factory=dict)
    citation: str | None = None  # reported rows
    citation_url: str | None = None
    note: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)
    content_hash: str = ""
    users: tuple[str, ...] = ()  # the users the run evaluated
    benchmark_users: int | None = None  # users in the whole benchmark
    shard: str | None = None
    predictions: list[dict[str, Any]] = field(default_factory=list)
    degradation: list[str] = field(default_factory=list)  # reasons for the board's mark
    origin: str = ""  # "results" or "submissions/<name>"
    how_verified: str = ""
    identical: list[str] = field(default_factory=list)  # paths of identical runs this row stands for
    merged_shards: list[str] = field(default_factory=list)  # paths of shard runs this merged run joined (not shown)
    uncertainty_kind: str | None = None  # reported rows: "ci95", "se" or None

    @property
    def date(self) -> str | None:
        stamp = self.provenance.get("finished_at") or self.provenance.get("started_at")
        return str(stamp)[:10] if stamp else None

    @property
    def full(self) -> bool:
        """The run covers every user of its benchmark (not a --users sample, not a shard)."""
        return self.shard is None and self.benchmark_users is not None and len(self.users) == self.benchmark_users

    @property
    def llm_identity(self) -> str | None:
        ident = self.provenance.get("llm_identity")
        return str(ident) if ident else None

    @property
    def key(self) -> tuple[str, ...]:
        """Unique per row: benchmark, user set, method, config, model, tier."""
        return (self.dataset, self.content_hash, user_set_id(self.users), self.method, config_id(self.config),
                self.base_model or "", self.llm_identity or "", self.tier, self.citation or "")


def config_id(config: Mapping[str, Any]) -> str:
    """A short, stable id of a method config (canonical JSON, sha256)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:8]


def user_set_id(users: tuple[str, ...] | list[str]) -> str:
    """A short, stable id of a set of user ids."""
    return hashlib.sha256("\n".join(sorted(users)).encode()).hexdigest()[:10]


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when below it (links are not resolved)."""
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(Path(os.path.abspath(Path.cwd()))).as_posix()
    except ValueError:
        return absolute.as_posix()


def walk_results(root: Path) -> Iterator[tuple[Path, str | None]]:
    """``(folder, None)`` for each folder at or below ``root`` holding a results.json entry, and
    ``(path, reason)`` for each link met on the way (reported, never followed). Sorted."""
    for here, names, links, problem in scan_folders(root):
        if problem:
            yield here, problem
            continue
        for d in links:
            yield d, "is a symbolic link to a folder; links in results folders are never followed"
        if RESULTS_FILE in names:
            yield here, None


def _need(d: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(d, Mapping) or key not in d:
        raise SchemaProblem(f"missing field {where}{key}")
    value = d[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise SchemaProblem(f"field {where}{key} has the wrong type ({type(value).__name__})")
    return value


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        f = float(value)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def _fraction(value: Any, where: str, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    f = _finite(value)
    if f is None or not 0 <= f <= 1:
        raise SchemaProblem(f"field {where} must be a fraction in [0, 1], got {str(value)[:40]!r}")
    return f


def _interval(value: Any, where: str, estimate: float | None = None) -> list[float] | None:
    if value is None:
        return None
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise SchemaProblem(f"field {where} must be [low, high]")
    lo, hi = (_fraction(v, where) for v in value)
    if lo > hi:  # type: ignore[operator]
        raise SchemaProblem(f"field {where} has low > high")
    if estimate is not None and not lo <= estimate <= hi:  # type: ignore[operator]
        raise SchemaProblem(f"field {where} = [{lo}, {hi}] does not contain its own estimate {estimate}")
    return [lo, hi]  # type: ignore[list-item]


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    f = _finite(value)
    if f is None or f < 0:
        raise SchemaProblem(f"field {where} must be a non-negative number, got {str(value)[:40]!r}")
    return f


def check_results(data: Any) -> None:
    """Raise :class:`SchemaProblem` if ``data`` is not a results.json the leaderboard can show."""
    if not isinstance(data, Mapping):
        raise SchemaProblem("top level is not a JSON object")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise SchemaProblem(f"schema_version is {str(data.get('schema_version'))[:20]!r}, expected {SCHEMA_VERSION}")
    status = data.get("status")
    if status not in ("ok", "not_applicable"):
        raise SchemaProblem(f"status is {str(status)[:40]!r}, expected 'ok' or 'not_applicable'")
    method = _need(data, "method", dict, "")
    if not _need(method, "name", str, "method.").strip():
        raise SchemaProblem("field method.name is empty")
    for key in ("config",):
        if not isinstance(method.get(key) or {}, Mapping):
            raise SchemaProblem(f"field method.{key} is not an object")
    for key in ("source", "base_model"):
        if method.get(key) is not None and not isinstance(method.get(key), str):
            raise SchemaProblem(f"field method.{key} is not text")
    dataset = _need(data, "dataset", dict, "")
    if not _need(dataset, "name", str, "dataset.").strip():
        raise SchemaProblem("field dataset.name is empty")
    _need(dataset, "content_hash", str, "dataset.")
    users = dataset.get("selected_users")
    if not isinstance(users, list) or not all(isinstance(u, str) for u in users):
        raise SchemaProblem("field dataset.selected_users must be a list of user ids")
    if status == "not_applicable":
        return
    scores = _need(data, "scores", dict, "")
    acc = _fraction(scores.get("accuracy"), "scores.accuracy")
    um = _fraction(scores.get("user_mean_accuracy"), "scores.user_mean_accuracy", optional=True)
    _interval(scores.get("accuracy_ci95"), "scores.accuracy_ci95", acc)
    _interval(scores.get("accuracy_ci95_users"), "scores.accuracy_ci95_users", acc)
    _interval(scores.get("user_mean_accuracy_ci95"), "scores.user_mean_accuracy_ci95", um)
    _interval(scores.get("user_mean_accuracy_ci95_reference"), "scores.user_mean_accuracy_ci95_reference", um)
    _fraction(scores.get("position_consistency"), "scores.position_consistency", optional=True)
    for key in ("n_judgments", "n_pairs", "n_users", "n_failed", "n_ties"):
        _number(scores.get(key), f"scores.{key}")
    for key in ("ci_kind", "ci_detail"):
        if not isinstance(scores.get(key) or {}, Mapping):
            raise SchemaProblem(f"field scores.{key} is not an object")
    cost = data.get("cost") or {}
    if not isinstance(cost, Mapping):
        raise SchemaProblem("field cost is not an object")
    for key in ("tokens_per_1000_judgments", "seconds_per_1000_judgments"):
        _number(cost.get(key), f"cost.{key}")
    per_user = data.get("per_user") or {}
    if not isinstance(per_user, Mapping):
        raise SchemaProblem("field per_user is not an object")
    for uid, row in per_user.items():
        if not isinstance(row, Mapping):
            raise SchemaProblem(f"field per_user.{str(uid)[:40]} is not an object")
        _fraction(row.get("accuracy"), f"per_user.{str(uid)[:40]}.accuracy", optional=True)
        _number(row.get("n_train"), f"per_user.{str(uid)[:40]}.n_train")
    for key in ("provenance", "files", "degradation"):
        if not isinstance(data.get(key) or {}, Mapping):
            raise SchemaProblem(f"field {key} is not an object")


def read_artifacts(folder: Path) -> dict[str, str]:
    """artifacts.json as {user: text} (texts cut at :data:`MAX_ARTIFACT_CHARS`); {} when absent."""
    path = folder / ARTIFACTS_FILE
    if not path.exists():
        return {}
    data = read_json(path, MAX_RESULTS_BYTES)
    if not isinstance(data, Mapping):
        raise ResultsError(f"{path}: not a JSON object of user_id -> text")
    out = {}
    for k, v in data.items():
        text = v if isinstance(v, str) else str(v)
        out[str(k)] = text if len(text) <= MAX_ARTIFACT_CHARS else text[:MAX_ARTIFACT_CHARS] + " [...]"
    return out


def run_from_results(data: Mapping[str, Any], folder: Path, tier: str) -> RunResult:
    """A :class:`RunResult` from a checked results.json (``check_results`` passed)."""
    method, dataset = data["method"], data["dataset"]
    base = method.get("base_model")
    return RunResult(
        dataset=dataset["name"], method=method["name"], tier=tier, base_model=str(base) if base else None,
        status=data["status"], not_applicable_reason=str(data.get("not_applicable_reason") or "") or None,
        synthetic=bool(dataset.get("synthetic", False)), scores=data.get("scores") or {},
        cost=data.get("cost") or {}, per_user=data.get("per_user") or {}, config=method.get("config") or {},
        provenance=data.get("provenance") or {}, source=str(method["source"]) if method.get("source") else None,
        run_id=str(data.get("run_id") or folder.name), path=display_path(folder), raw=data,
        content_hash=str(dataset["content_hash"]), users=tuple(sorted(dataset["selected_users"])),
        shard=str(dataset["shard"]) if dataset.get("shard") else None,
    )


def select_identical(runs: list[RunResult]) -> list[RunResult]:
    """One row per identical setup (same benchmark and users, method, config, model, tier).

    The rule, stated on the page: the run with the lowest seed, then the first run folder in
    path order. Dates are never used, so a newer or future-dated folder cannot displace a row.
    """
    by_key: dict[tuple[str, ...], list[RunResult]] = {}
    for run in runs:
        by_key.setdefault(run.key, []).append(run)
    out = []
    for key in sorted(by_key):
        group = sorted(by_key[key], key=lambda r: (_seed(r), r.path or ""))
        chosen = group[0]
        chosen.identical = [r.path or "" for r in group[1:]]
        chosen.merged_shards = sorted({p for r in group for p in r.merged_shards})  # what the others joined
        out.append(chosen)
    return out


def drop_merged_shards(runs: list[RunResult]) -> list[RunResult]:
    """``runs`` without the shard runs (``--shard i/n``) that a merged run among them joined
    (``prb merge``): the merged run is the fuller run of the same setup, so a shard would only repeat
    part of it as a subset table. A shard is joined when a merged run's ``provenance.merged_from``
    names its run id and shard, on the same benchmark version, method, config and model, and its
    users are among the merged run's. The merged run lists the shards it stands for
    (``merged_shards``). Unmerged shards stay (their subset tables say to join them)."""
    merged: dict[tuple[str, ...], list[RunResult]] = {}
    for run in runs:
        for entry in run.provenance.get("merged_from") or ():
            if isinstance(entry, Mapping) and entry.get("run_id") and entry.get("shard"):
                merged.setdefault(_setup_key(run, str(entry["run_id"]), str(entry["shard"])), []).append(run)
    if not merged:
        return runs
    out = []
    for run in runs:
        covering = [m for m in merged.get(_setup_key(run, run.run_id, run.shard or ""), ()) if m is not run
                    and set(run.users) <= set(m.users)] if run.shard else []
        if covering:
            for m in covering:
                m.merged_shards = sorted({*m.merged_shards, run.path or "", *run.identical})
        else:
            out.append(run)
    return out


def _setup_key(run: RunResult, run_id: str, shard: str) -> tuple[str, ...]:
    return (run.dataset, run.content_hash, run.method, config_id(run.config), run.base_model or "",
            run.llm_identity or "", run.tier, run_id, shard)


def _seed(run: RunResult) -> int:
    seed = run.provenance.get("seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) and abs(seed) < 2**63 else 2**63


def reported_runs(rows: list[Mapping[str, Any]]) -> list[RunResult]:
    """Published numbers as rows. ``rows`` are ``ReportedRow.to_dict()`` mappings
    (:mod:`personalrewardbench.leaderboard.reported`): fractions, with ``ci95_half_width`` (already
    converted to a 95% half-width from the stated kind) or None."""
    out = []
    for r in rows:
        acc = float(r["accuracy"])
        half = r.get("ci95_half_width")
        scores: dict[str, Any] = {"accuracy": acc}
        if half is not None:
            scores["accuracy_ci95"] = [max(0.0, acc - float(half)), min(1.0, acc + float(half))]
        out.append(RunResult(
            dataset=str(r["dataset"]), method=str(r["method"]), tier="reported",
            base_model=str(r.get("base_model") or "") or None, status="ok", scores=scores,
            citation=str(r.get("source") or "") or None, citation_url=r.get("citation_url") or None,
            note=r.get("note") or None, run_id="reported", uncertainty_kind=r.get("uncertainty_kind") or None,
        ))
    return out
