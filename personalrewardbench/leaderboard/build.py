"""Render the static leaderboard site from results folders (and the reported rows).

The output is deterministic: the same inputs give byte-identical files. The
output folder is owned by the build: files a previous build wrote and this one
did not are removed (only in a folder that carries the build's marker file).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from personalrewardbench.leaderboard.collect import RunResult, Skipped, collect_runs, reported_runs
from personalrewardbench.leaderboard.exports import to_csv, to_json, to_markdown
from personalrewardbench.leaderboard.index_page import index_html
from personalrewardbench.leaderboard.method_page import method_html
from personalrewardbench.leaderboard.plots import dataset_figures
from personalrewardbench.leaderboard.table import (
    Row,
    dataset_sort_key,
    dataset_tables,
    export_record,
    overall_rows,
    slug,
)

MARKER = ".prb-site"
STATIC = Path(__file__).parent / "static"


class SiteError(RuntimeError):
    """The site cannot be written where asked (message says why and what to do)."""


@dataclass
class BuildReport:
    out_dir: Path
    runs: list[RunResult] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    @property
    def index(self) -> Path:
        return self.out_dir / "index.html"


def load_reported_runs() -> tuple[list[RunResult], list[Skipped]]:
    """Rows of published numbers via ``leaderboard.reported.load_reported`` (if that module exists)."""
    try:
        mod = importlib.import_module("personalrewardbench.leaderboard.reported")
    except ModuleNotFoundError:
        return [], []
    try:
        rows = mod.load_reported()
    except Exception as exc:  # noqa: BLE001 - a broken reported CSV must not stop the build
        return [], [Skipped("leaderboard/reported/reported-results.csv", f"could not be read: {exc}")]
    return reported_runs([r.to_dict() if hasattr(r, "to_dict") else r for r in rows]), []


def _prepare_out(out: Path) -> set[Path]:
    if out.exists() and not out.is_dir():
        raise SiteError(f"{out} exists and is not a folder; pass another --out")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise SiteError(f"{out} is not empty and was not written by `prb leaderboard build` (no {MARKER} file); "
                        "pass an empty or new folder as --out")
    out.mkdir(parents=True, exist_ok=True)
    return {p for p in out.rglob("*") if p.is_file()}


class _Writer:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.written: list[str] = []

    def text(self, rel: str, content: str) -> None:
        self.bytes(rel, content.encode("utf-8"))

    def bytes(self, rel: str, content: bytes) -> None:
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_bytes() != content:
            path.write_bytes(content)
        self.written.append(rel)


def _copy_results(w: _Writer, runs: Sequence[RunResult]) -> dict[tuple, str | None]:
    hrefs: dict[tuple, str | None] = {}
    for run in runs:
        if run.tier == "reported" or not run.path:
            hrefs[run.key] = None
            continue
        folder = f"data/{slug(run.dataset)}/{slug(run.method)}/{slug(run.tier + '-' + (run.base_model or 'none'))}"
        src = Path(run.path)
        w.bytes(f"{folder}/results.json", (src / "results.json").read_bytes())
        if (src / "artifacts.json").is_file():
            w.bytes(f"{folder}/artifacts.json", (src / "artifacts.json").read_bytes())
        hrefs[run.key] = f"{folder}/results.json"
    return hrefs


def build_site(results_dirs: Iterable[Path], out_dir: Path, *, include_reported: bool = True,
               repo_url: str | None = None, plots: bool = True) -> BuildReport:
    """Build the site under ``out_dir`` from every results.json under ``results_dirs``.

    ``plots=False`` leaves out the figures (a quick preview of the tables).
    """
    out_dir = Path(out_dir)
    before = _prepare_out(out_dir)
    runs, skipped = collect_runs(results_dirs)
    if include_reported:
        rep, rep_skipped = load_reported_runs()
        runs += rep
        skipped += rep_skipped
    w = _Writer(out_dir)
    w.text(MARKER, "Written by `prb leaderboard build`; everything in this folder is regenerated.\n")
    w.text(".nojekyll", "")
    for name in ("site.css", "table.js"):
        w.bytes(f"assets/{name}", (STATIC / name).read_bytes())
    hrefs = _copy_results(w, runs)
    tables = dataset_tables(runs)
    overall = overall_rows(tables)
    figures = {}
    for ds, rows in tables.items() if plots else ():
        figures[ds] = dataset_figures(ds, rows, out_dir / "plots")
        for stem in figures[ds].values():
            w.written += [f"plots/{stem}.png", f"plots/{stem}.svg"]
    w.text("index.html", index_html(tables, overall, figures, hrefs, skipped, repo_url))
    by_method: dict[str, list[Row]] = {}
    for ds in sorted(tables, key=dataset_sort_key):
        for row in tables[ds]:
            by_method.setdefault(row.run.method, []).append(row)
    for method, rows in sorted(by_method.items()):
        w.text(f"methods/{slug(method)}.html", method_html(method, rows, hrefs, repo_url))
    records = [export_record(ds, row, f"methods/{slug(row.run.method)}.html", hrefs.get(row.run.key))
               for ds, rows in tables.items() for row in rows]
    w.text("leaderboard.csv", to_csv(records))
    w.text("leaderboard.json", to_json(records, [{"path": s.path, "reason": s.reason} for s in skipped]))
    w.text("leaderboard.md", to_markdown(records))
    keep = {out_dir / rel for rel in w.written}
    for stale in sorted(before - keep):
        stale.unlink()
    for d in sorted((p for p in out_dir.rglob("*") if p.is_dir()), reverse=True):
        if not any(d.iterdir()):
            d.rmdir()
    return BuildReport(out_dir=out_dir, runs=runs, skipped=skipped, files=sorted(set(w.written)))
