"""Find results folders, check each results.json against what the leaderboard shows, load them.

A results file that fails the check is skipped (the build goes on) and reported
with its path and the first problem found. Everything loaded here is untrusted
text (it may come from a submission): it is escaped where it is rendered.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from personalrewardbench.results import SCHEMA_VERSION

TIERS = ("reported", "reproduced", "submitted")


class SchemaProblem(ValueError):
    """A results.json that the leaderboard cannot show; the message names the field."""


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class RunResult:
    """One results folder (or one reported row), as the leaderboard uses it."""

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
    path: str | None = None  # results folder, relative to the working directory where possible
    artifacts: Mapping[str, str] = field(default_factory=dict)
    citation: str | None = None  # reported rows
    citation_url: str | None = None
    note: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def date(self) -> str | None:
        stamp = self.provenance.get("finished_at") or self.provenance.get("started_at")
        return str(stamp)[:10] if stamp else None

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.dataset, self.method, self.tier, self.base_model or "")


def default_results_dirs(root: Path) -> list[Path]:
    """``results/`` plus every ``submissions/*/results/`` under ``root`` that exists."""
    dirs = [root / "results"]
    sub = root / "submissions"
    if sub.is_dir():
        dirs += sorted(p / "results" for p in sub.iterdir() if (p / "results").is_dir())
    return [d for d in dirs if d.is_dir()]


def _display_path(path: Path) -> str:
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def _need(d: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(d, Mapping) or key not in d:
        raise SchemaProblem(f"missing field {where}{key}")
    value = d[key]
    if not isinstance(value, kind) or isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise SchemaProblem(f"field {where}{key} has the wrong type ({type(value).__name__})")
    return value


def _fraction(value: Any, where: str, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or not 0 <= value <= 1:
        raise SchemaProblem(f"field {where} must be a fraction in [0, 1], got {value!r}")
    return float(value)


def _interval(value: Any, where: str) -> list[float] | None:
    if value is None:
        return None
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise SchemaProblem(f"field {where} must be [low, high]")
    lo, hi = (_fraction(v, where) for v in value)
    if lo > hi:  # type: ignore[operator]
        raise SchemaProblem(f"field {where} has low > high")
    return [lo, hi]  # type: ignore[list-item]


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise SchemaProblem(f"field {where} must be a non-negative number, got {value!r}")
    return float(value)


def check_results(data: Any) -> None:
    """Raise :class:`SchemaProblem` if ``data`` is not a results.json the leaderboard can show."""
    if not isinstance(data, Mapping):
        raise SchemaProblem("top level is not a JSON object")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise SchemaProblem(f"schema_version is {data.get('schema_version')!r}, expected {SCHEMA_VERSION}")
    status = data.get("status")
    if status not in ("ok", "not_applicable"):
        raise SchemaProblem(f"status is {status!r}, expected 'ok' or 'not_applicable'")
    method = _need(data, "method", dict, "")
    if not _need(method, "name", str, "method.").strip():
        raise SchemaProblem("field method.name is empty")
    tier = method.get("tier", "reproduced")
    if tier not in ("reproduced", "submitted"):
        raise SchemaProblem(f"field method.tier is {tier!r}, expected 'reproduced' or 'submitted'")
    dataset = _need(data, "dataset", dict, "")
    if not _need(dataset, "name", str, "dataset.").strip():
        raise SchemaProblem("field dataset.name is empty")
    if status == "not_applicable":
        return
    scores = _need(data, "scores", dict, "")
    _fraction(scores.get("accuracy"), "scores.accuracy")
    for key in ("accuracy_ci95", "accuracy_ci95_users", "user_mean_accuracy_ci95"):
        _interval(scores.get(key), f"scores.{key}")
    for key in ("user_mean_accuracy", "position_consistency"):
        _fraction(scores.get(key), f"scores.{key}", optional=True)
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
            raise SchemaProblem(f"field per_user.{uid} is not an object")
        _fraction(row.get("accuracy"), f"per_user.{uid}.accuracy", optional=True)
        _number(row.get("n_train"), f"per_user.{uid}.n_train")
    for key in ("provenance", "files"):
        if not isinstance(data.get(key) or {}, Mapping):
            raise SchemaProblem(f"field {key} is not an object")


def _load_artifacts(folder: Path) -> dict[str, str]:
    path = folder / "artifacts.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, Mapping):
        return {}
    return {str(k): v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in data.items()}


def load_run(path: Path) -> RunResult:
    """Load and check one results.json (raises SchemaProblem or OSError/ValueError)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    check_results(data)
    method, dataset = data["method"], data["dataset"]
    base = method.get("base_model")
    return RunResult(
        dataset=dataset["name"],
        method=method["name"],
        tier=method.get("tier", "reproduced"),
        base_model=str(base) if base else None,
        status=data["status"],
        not_applicable_reason=data.get("not_applicable_reason"),
        synthetic=bool(dataset.get("synthetic", False)),
        scores=data.get("scores") or {},
        cost=data.get("cost") or {},
        per_user=data.get("per_user") or {},
        config=method.get("config") or {},
        provenance=data.get("provenance") or {},
        source=str(method["source"]) if method.get("source") else None,
        run_id=str(data.get("run_id") or path.parent.name),
        path=_display_path(path.parent),
        artifacts=_load_artifacts(path.parent),
        raw=data,
    )


def collect_runs(dirs: Iterable[Path]) -> tuple[list[RunResult], list[Skipped]]:
    """Every results.json under ``dirs``; the newest run per (dataset, method, tier, base model).

    Returns (runs, skipped). Shard results (``dataset.shard`` set) are skipped:
    merge them first with ``prb merge``.
    """
    runs: list[RunResult] = []
    skipped: list[Skipped] = []
    seen: set[Path] = set()
    for d in dirs:
        for path in sorted(Path(d).rglob("results.json")):
            real = path.resolve()
            if real in seen:
                continue
            seen.add(real)
            shown = _display_path(path)
            try:
                run = load_run(path)
            except SchemaProblem as exc:
                skipped.append(Skipped(shown, f"fails the results schema: {exc}"))
                continue
            except (OSError, ValueError) as exc:
                skipped.append(Skipped(shown, f"cannot be read as JSON: {exc}"))
                continue
            if run.raw.get("dataset", {}).get("shard"):
                skipped.append(Skipped(shown, "is one shard of a run; join the shards with `prb merge` first"))
                continue
            runs.append(run)
    newest: dict[tuple[str, str, str, str], RunResult] = {}
    for run in runs:
        order = (str(run.provenance.get("finished_at") or ""), run.run_id, run.path or "")
        old = newest.get(run.key)
        if old is None or order > (str(old.provenance.get("finished_at") or ""), old.run_id, old.path or ""):
            newest[run.key] = run
    return [newest[k] for k in sorted(newest)], sorted(skipped, key=lambda s: s.path)


def reported_runs(rows: Sequence[Mapping[str, Any]]) -> list[RunResult]:
    """Published numbers as leaderboard rows. ``rows`` are ``ReportedRow.to_dict()`` mappings
    (:mod:`personalrewardbench.leaderboard.reported`): fractions, with ``ci95_half_width`` or None."""
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
            note=r.get("note") or None, run_id="reported",
        ))
    return out
