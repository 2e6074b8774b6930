"""Which results folders become leaderboard rows: sealed, verified against their benchmark, tier from origin.

A results folder becomes a row only when, in this order:

1. none of its files is a link, and results.json parses and has the shape the board shows
   (:func:`~personalrewardbench.leaderboard.collect.check_results`);
2. its origin allows it: a folder under ``submissions/<name>/results/`` may hold only runs of
   that submission's own methods (the names its ``submission.toml`` declares), and neither the
   submission folder nor its ``results`` folder may be a link;
3. its seal checks under the builder's seal key (:mod:`personalrewardbench.seal`): an unsealed
   folder, or one sealed with another key or edited after sealing, is excluded;
4. the benchmark it names is found (:class:`~personalrewardbench.benchmark_lookup.BenchmarkFinder`)
   and every figure, hash and query of the run reproduces (:func:`~personalrewardbench.runs.verify_run`).

The tier comes from the origin, never from a field in the file: ``submitted`` for a
submission's own runs under ``submissions/<name>/results/``; ``reproduced`` for runs elsewhere
of methods from ``baselines/`` (``method.source``, written by the harness and covered by the
seal); ``local`` for other runs made with this key (a method author's own runs before
submitting). ``reported`` rows come only from the citation file. Every excluded folder is
returned with its path and reason, for the build output and the page.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from personalrewardbench.benchmark_lookup import BenchmarkFinder
from personalrewardbench.degradation import degradation_flags
from personalrewardbench.leaderboard.collect import (
    MAX_RESULTS_BYTES,
    RUN_FILES,
    RunResult,
    SchemaProblem,
    Skipped,
    check_results,
    display_path,
    drop_merged_shards,
    read_artifacts,
    run_from_results,
    select_identical,
    walk_results,
)
from personalrewardbench.results import RESULTS_FILE, ResultsError, read_bytes_limited, read_json, read_predictions
from personalrewardbench.seal import NoSealKey, SealKey, check_seal, load_key
from personalrewardbench.submissions.spec import NAME_RE

SUBMISSIONS = "submissions"
SUBMISSION_FILE = "submission.toml"


@dataclass(frozen=True)
class Origin:
    """Where a results folder sits: under a submission (``name`` set) or anywhere else."""

    submission: str | None = None
    folder: Path | None = None  # the submission folder
    problem: str | None = None

    @property
    def label(self) -> str:
        return f"{SUBMISSIONS}/{self.submission}" if self.submission else "results"


def origin_of(path: Path) -> Origin:
    """The origin of ``path`` (a results root or run folder): the outermost ``submissions/<name>/results``
    above it, if any (a submission cannot fake another one inside its own results folder); links at
    the submission or its results folder are a problem. Below the working directory (the repository
    the board is built from) only the part of the path inside it counts, so a checkout that itself sits
    in a folder named ``submissions/<x>/`` does not make every run a submission's."""
    absolute = Path(os.path.abspath(path))
    cwd = Path(os.path.abspath(Path.cwd()))
    base = cwd if absolute.is_relative_to(cwd) else Path(absolute.anchor)
    parts = absolute.relative_to(base).parts
    for i in range(len(parts) - 2):
        if parts[i] == SUBMISSIONS and parts[i + 2] == "results":
            folder = base.joinpath(*parts[: i + 2])
            for p in (folder, folder / "results"):
                if p.is_symlink():
                    return Origin(parts[i + 1], folder, f"{display_path(p)} is a symbolic link; links in "
                                                        "submission folders are never followed")
            return Origin(parts[i + 1], folder)
    return Origin()


def declared_methods(folder: Path) -> frozenset[str]:
    """The method names a submission declares: ``[submission].name`` plus ``<name>-<suffix>`` per
    ``[variants.<suffix>]`` (read as plain TOML, never through a link). Raises ResultsError."""
    path = folder / SUBMISSION_FILE
    try:
        doc = tomllib.loads(read_bytes_limited(path, 1 << 20).decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: not valid TOML ({str(exc)[:120]})") from None
    sub = doc.get("submission")
    name = sub.get("name") if isinstance(sub, dict) else None
    if not isinstance(name, str) or not name:
        raise ResultsError(f"{path}: no [submission] name")
    if name != folder.name or not NAME_RE.match(name):
        raise ResultsError(f"{path}: [submission] name {name[:60]!r} must equal the folder name {folder.name[:60]!r} "
                           "(lowercase letters, digits and '-'); run `prb submission validate`")
    variants = doc.get("variants") if isinstance(doc.get("variants"), dict) else {}
    bad = [s for s in variants if not isinstance(s, str) or not NAME_RE.match(s)]
    if bad:
        raise ResultsError(f"{path}: variant name {str(bad[0])[:60]!r} is not lowercase letters, digits and '-'")
    return frozenset([name, *(f"{name}-{s}" for s in variants)])


def made_from(source: str | None, folder: Path) -> bool:
    """Whether a run's ``method.source`` (written by the harness, covered by the seal) is the submission
    folder ``folder``: a path ending in ``submissions/<name>`` (relative when scored inside the repository,
    absolute when CI scored a pull request's checkout)."""
    parts = Path(source).parts if isinstance(source, str) and source else ()
    return parts[-2:] == (SUBMISSIONS, folder.name)


def default_results_dirs(root: Path) -> list[Path]:
    """``results/`` plus every ``submissions/*/results`` under ``root`` (links included, to be reported)."""
    dirs = [root / "results"] if (root / "results").is_dir() else []
    sub = root / SUBMISSIONS
    if sub.is_dir() and not sub.is_symlink():
        dirs += sorted(p / "results" for p in sub.iterdir() if os.path.lexists(p / "results"))
    return dirs


class RunGate:
    """Decides, folder by folder, what becomes a row (see module doc)."""

    def __init__(self, finder: BenchmarkFinder | None = None, key: SealKey | None = None) -> None:
        self.finder = finder or BenchmarkFinder()
        self.key = key
        self.key_problem = ""
        if key is None:
            try:  # a misconfigured key ($PRB_SEAL_KEY empty, required but unset, ...) stops the build
                self.key = load_key(create=False)
            except NoSealKey as exc:  # no key here: every run is excluded with this reason
                self.key_problem = str(exc)
        self._declared: dict[Path, frozenset[str] | str] = {}

    def _own_methods(self, origin: Origin) -> frozenset[str] | str:
        assert origin.folder is not None
        if origin.folder not in self._declared:
            try:
                self._declared[origin.folder] = declared_methods(origin.folder)
            except ResultsError as exc:
                self._declared[origin.folder] = str(exc)
        return self._declared[origin.folder]

    def tier(self, origin: Origin, method: str, source: str | None) -> tuple[str | None, str | None]:
        """(tier, None) or (None, why the run cannot be shown from where it sits)."""
        if origin.problem:
            return None, origin.problem
        if origin.submission:
            own = self._own_methods(origin)
            if isinstance(own, str):
                return None, f"its submission's methods cannot be read: {own}"
            if method not in own:
                return None, (f"a run of {method!r} under {origin.label}/results is not one of that submission's "
                              f"methods ({', '.join(sorted(own))})")
            assert origin.folder is not None
            if not made_from(source, origin.folder):
                return None, (f"a run of {method!r} made from {str(source)[:120]!r}, not from {origin.label}; a "
                              "submission's results folder holds only runs of its own code")
            return "submitted", None
        if source and (source.startswith("baselines/") or source == "baselines"):
            return "reproduced", None
        return "local", None

    def admit(self, folder: Path) -> tuple[RunResult | None, str | None]:
        """(row, None) for a run the board shows, else (None, the reason it is excluded)."""
        for name in RUN_FILES:
            if (folder / name).is_symlink():
                return None, f"{name} is a symbolic link; links in results folders are never followed"
        try:
            data = read_json(folder / RESULTS_FILE, MAX_RESULTS_BYTES)
            check_results(data)
        except ResultsError as exc:
            return None, str(exc)
        except SchemaProblem as exc:
            return None, f"fails the results schema: {exc}"
        origin = origin_of(folder)
        tier, why = self.tier(origin, data["method"]["name"], data["method"].get("source"))
        if tier is None:
            return None, why
        if self.key is None:
            return None, f"seal not checked: {self.key_problem}"
        seal = check_seal(folder, self.key)
        if not seal.ok:
            return None, f"{'unsealed' if seal.status == 'unsealed' else 'bad seal'}: {seal.detail}"
        try:
            bench, how = self.finder.find(data)
        except ResultsError as exc:
            return None, f"cannot be verified: {exc}"
        from personalrewardbench.runs import verify_run

        problems = verify_run(folder, bench)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            return None, f"does not verify against its benchmark: {problems[0]}{more}"
        run = run_from_results(data, folder, tier)
        run.benchmark_users = len(bench.user_ids())
        run.predictions = read_predictions(folder) if data["status"] == "ok" else []
        run.artifacts = read_artifacts(folder)
        run.degradation = degradation_flags(data)
        run.origin, run.how_verified = origin.label, how
        return run, None


def collect_runs(dirs: Iterable[Path], *, finder: BenchmarkFinder | None = None,
                 key: SealKey | None = None) -> tuple[list[RunResult], list[Skipped]]:
    """Every results folder under ``dirs`` that the board shows (one per identical setup, see
    :func:`~personalrewardbench.leaderboard.collect.select_identical`), and every one it excludes
    with the reason. Never raises for a bad folder."""
    gate = RunGate(finder, key)
    runs: list[RunResult] = []
    skipped: list[Skipped] = []
    seen: set[str] = set()
    for d in dirs:
        root = Path(d)
        origin = origin_of(root)
        if origin.problem:
            skipped.append(Skipped(display_path(root), origin.problem))
            continue
        for folder, link_reason in walk_results(root):
            shown = display_path(folder)
            if link_reason:
                skipped.append(Skipped(shown, link_reason))
                continue
            real = os.path.realpath(folder)
            if real in seen:
                continue
            seen.add(real)
            try:
                run, reason = gate.admit(folder)
            except Exception as exc:  # noqa: BLE001 - one bad folder never stops the build
                run, reason = None, f"could not be read ({type(exc).__name__}: {str(exc)[:200]})"
            if run is None:
                skipped.append(Skipped(f"{shown}/{RESULTS_FILE}", str(reason)))
            else:
                runs.append(run)
    return select_identical(drop_merged_shards(runs)), sorted(set(skipped), key=lambda s: (s.path, s.reason))
