"""Render the static leaderboard site from verified results folders (and the reported rows).

The output is deterministic: the same inputs give byte-identical files. The
output folder is owned by the build: files a previous build wrote and this one
did not are removed (only in a folder that carries the build's marker file).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from personalrewardbench.benchmark_lookup import BenchmarkFinder
from personalrewardbench.leaderboard.collect import RunResult, Skipped, reported_runs
from personalrewardbench.leaderboard.exports import to_csv, to_json, to_markdown
from personalrewardbench.leaderboard.index_page import index_html
from personalrewardbench.leaderboard.method_page import method_html
from personalrewardbench.leaderboard.plots import dataset_figures
from personalrewardbench.leaderboard.table import Group, Row, build_board, export_record, slug
from personalrewardbench.leaderboard.verification import collect_runs
from personalrewardbench.run_folders import SITE_COPY, SITE_MARKER
from personalrewardbench.seal import SealKey

MARKER = SITE_MARKER  # ".prb-site": the folder is a site this command wrote (so it may be rewritten)
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


def check_out_apart(out: Path, results_dirs: Iterable[Path], *, out_option: str = "--out",
                    results_option: str = "--results") -> None:
    """SiteError when the site folder ``out`` is a results root, lies inside one or holds one (paths
    compared after resolving links): the site keeps copies of results.json under ``data/``, which
    ``prb verify`` and later builds of that root would read as runs (unsealed ones), and a build
    would delete the results it did not write. The options name the folders in the message."""
    o = Path(out).expanduser().resolve()
    for d in results_dirs:
        r = Path(d).expanduser().resolve()
        if o == r or o.is_relative_to(r) or r.is_relative_to(o):
            how = "is" if o == r else "lies inside" if o.is_relative_to(r) else "holds"
            raise SiteError(f"{out_option} {out} {how} the results folder {results_option} {d}: the site's copies of "
                            "results.json (under data/) would be read as unsealed runs by `prb verify` and later "
                            f"builds; pass a {out_option} folder outside every results folder (e.g. {out_option} "
                            "my-site)")


def check_site_folder(out: Path, *, out_option: str = "--out") -> None:
    """SiteError when the site folder ``out`` cannot be (re)written: it is a file, or a non-empty folder
    a build did not write (no marker file), which the build would clear. ``out_option`` is the option
    that named it (``--site`` for `prb run`), for the message. Call it before any long work."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SiteError(f"{out_option} {out} exists and is not a folder; pass another {out_option}")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise SiteError(f"{out_option} {out} is not empty and was not written by `prb leaderboard build` (no {MARKER} "
                        f"file); pass an empty or new folder as {out_option}")


def _prepare_out(out: Path, out_option: str = "--out") -> set[Path]:
    check_site_folder(out, out_option=out_option)
    out.mkdir(parents=True, exist_ok=True)
    return {p for p in out.rglob("*") if p.is_file()}


class _Writer:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.written: list[str] = []

    def text(self, rel: str, content: str) -> None:
        # folder names that are not valid UTF-8 reach here as lone surrogates: shown as \udcxx, never a crash
        self.bytes(rel, content.encode("utf-8", "backslashreplace"))

    def bytes(self, rel: str, content: bytes) -> None:
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_bytes() != content:
            path.write_bytes(content)
        self.written.append(rel)


def _copy_results(w: _Writer, runs: Sequence[RunResult]) -> dict[tuple, str | None]:
    """Copy each shown run's results.json (as ``run-results.json``: a results walk never takes a site's
    copy for a run) and artifacts.json (read as regular files only) into data/."""
    from personalrewardbench.results import read_bytes_limited

    hrefs: dict[tuple, str | None] = {}
    for run in runs:
        if run.tier == "reported" or not run.path:
            hrefs[run.key] = None
            continue
        row_id = Row(run).row_id
        folder = f"data/{slug(run.dataset)}/{slug(run.method)}/{run.tier}-{row_id}"
        src = Path(run.path)
        w.bytes(f"{folder}/{SITE_COPY}", read_bytes_limited(src / "results.json"))
        if (src / "artifacts.json").exists():
            w.bytes(f"{folder}/artifacts.json", read_bytes_limited(src / "artifacts.json"))
        hrefs[run.key] = f"{folder}/{SITE_COPY}"
    return hrefs


def build_site(results_dirs: Iterable[Path], out_dir: Path, *, include_reported: bool = True,
               repo_url: str | None = None, plots: bool = True, seal_key: SealKey | None = None,
               finder: BenchmarkFinder | None = None, out_option: str = "--out") -> BuildReport:
    """Build the site under ``out_dir`` from the results folders under ``results_dirs``.

    Only sealed runs that verify against their benchmark become rows (see
    :mod:`personalrewardbench.leaderboard.verification`); every other folder is listed, with its
    reason, in the report and on the page. ``seal_key`` defaults to this machine's key
    (``$PRB_SEAL_KEY`` or the cache's seal.key); ``plots=False`` leaves out the figures.
    Raises SiteError (before writing anything) when ``out_dir`` is, lies inside or holds one of
    ``results_dirs`` (:func:`check_out_apart`), or is a file or a foreign non-empty folder
    (:func:`check_site_folder`); ``out_option`` names the site option in those messages.
    """
    out_dir = Path(out_dir)
    results_dirs = list(results_dirs)
    check_out_apart(out_dir, results_dirs, out_option=out_option)
    before = _prepare_out(out_dir, out_option)
    runs, skipped = collect_runs(results_dirs, finder=finder, key=seal_key)
    if include_reported:
        rep, rep_skipped = load_reported_runs()
        runs += rep
        skipped += rep_skipped
    board = build_board(runs)
    w = _Writer(out_dir)
    w.text(MARKER, "Written by `prb leaderboard build`; everything in this folder is regenerated.\n")
    w.text(".nojekyll", "")
    for name in ("site.css", "table.js"):
        w.bytes(f"assets/{name}", (STATIC / name).read_bytes())
    hrefs = _copy_results(w, runs)
    figures: dict[str, dict[str, str]] = {}
    for g in board.groups if plots else ():
        figures[g.group_id] = dataset_figures(g, out_dir / "plots")
        for stem in figures[g.group_id].values():
            w.written += [f"plots/{stem}.png", f"plots/{stem}.svg"]
    w.text("index.html", index_html(board, figures, hrefs, skipped, repo_url))
    tables: list[Group] = [*board.groups, *board.subsets, *board.reported]
    by_method: dict[str, list[tuple[Group, Row]]] = {}
    for g in tables:
        for row in g.rows:
            by_method.setdefault(row.run.method, []).append((g, row))
    for method, rows in sorted(by_method.items()):
        w.text(f"methods/{slug(method)}.html", method_html(method, rows, hrefs, repo_url))
    records = [export_record(g, row, f"methods/{slug(row.run.method)}.html", hrefs.get(row.run.key))
               for g in tables for row in g.rows]
    w.text("leaderboard.csv", to_csv(records))
    w.text("leaderboard.json", to_json(records, [{"path": s.path, "reason": s.reason} for s in skipped]))
    w.text("leaderboard.md", to_markdown(records))
    keep = {out_dir / rel for rel in w.written}
    for stale in sorted(before - keep):
        stale.unlink()
    for d in sorted((p for p in out_dir.rglob("*") if p.is_dir()), reverse=True):
        if not any(d.iterdir()):
            d.rmdir()
    shown = [row.run for g in tables for row in g.rows]
    return BuildReport(out_dir=out_dir, runs=shown, skipped=skipped, files=sorted(set(w.written)))
