"""Published ("reported") leaderboard rows: numbers from papers, with citations, not run here.

The data file is ``leaderboard/reported/reported-results.csv`` (see the README
next to it for provenance). Columns: ``source`` (the citation, verbatim),
``dataset``, ``base_model``, ``method``, ``accuracy`` (percent, as published),
``ci95_or_se`` (percent, may be empty), ``uncertainty_kind`` (``ci95``: the
half-width of a 95% confidence interval; ``se``: a standard error; empty when
the source gives none), ``note`` and ``citation_url``.
:func:`load_reported` returns them as :class:`ReportedRow` with fractions in [0, 1].
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from personalrewardbench.cli import UserError

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "leaderboard" / "reported" / "reported-results.csv"
COLUMNS = ("source", "dataset", "base_model", "method", "accuracy", "ci95_or_se", "uncertainty_kind", "note",
           "citation_url")
UNCERTAINTY_KINDS = ("ci95", "se")
Z95 = 1.959964


class ReportedError(UserError):
    """The reported-results file is malformed; the message names the row and field."""


@dataclass(frozen=True)
class ReportedRow:
    """One published number. ``accuracy`` and ``uncertainty`` are fractions (0.5669, not 56.69).

    ``uncertainty_kind`` says what ``uncertainty`` is: ``"ci95"`` (half-width of a
    95% CI), ``"se"`` (standard error) or None (not given). ``ci95_half_width``
    is the CI half-width as published, or 1.96 x SE (normal approximation) for SE rows.
    """

    source: str
    dataset: str
    base_model: str
    method: str
    accuracy: float
    uncertainty: float | None
    uncertainty_kind: str | None
    note: str | None
    citation_url: str | None
    line: int
    tier: str = "reported"

    @property
    def citation(self) -> str:
        return self.source

    @property
    def ci95_half_width(self) -> float | None:
        if self.uncertainty is None:
            return None
        return self.uncertainty if self.uncertainty_kind == "ci95" else Z95 * self.uncertainty

    @property
    def ci95(self) -> tuple[float, float] | None:
        half = self.ci95_half_width
        if half is None:
            return None
        return (max(0.0, self.accuracy - half), min(1.0, self.accuracy + half))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ci95_half_width"] = self.ci95_half_width
        out["ci95"] = list(self.ci95) if self.ci95 else None
        return out

    def get(self, key: str, default: Any = None) -> Any:
        """Mapping-style access, so code that reads rows as dicts can read these too."""
        value = self.to_dict().get(key, default)
        return default if value is None else value


def _percent(value: str, where: str, field: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise ReportedError(f"{where}: {field} {value!r} is not a number; write the percentage, e.g. 56.69") from None
    if not math.isfinite(x) or not 0.0 <= x <= 100.0:
        raise ReportedError(f"{where}: {field} {value!r} must be a percentage in [0, 100]")
    return round(x / 100.0, 10)


def load_reported(path: str | Path | None = None) -> list[ReportedRow]:
    """Read the reported-results CSV (default: the repository's); raise ReportedError naming row and field."""
    path = Path(path) if path is not None else DEFAULT_PATH
    if not path.is_file():
        raise ReportedError(f"{path}: reported-results file not found; pass the path to reported-results.csv")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS[:8] if c not in (reader.fieldnames or [])]
        if missing:
            raise ReportedError(f"{path}: missing column(s) {', '.join(missing)}; the header must be "
                                f"{','.join(COLUMNS)}")
        rows = []
        for i, rec in enumerate(reader, start=2):
            where = f"{path}, line {i}"
            for field in ("source", "dataset", "method"):
                if not (rec.get(field) or "").strip():
                    raise ReportedError(f"{where}: {field} is empty; every row needs its {field}")
            kind = (rec.get("uncertainty_kind") or "").strip() or None
            raw_unc = (rec.get("ci95_or_se") or "").strip()
            if kind is not None and kind not in UNCERTAINTY_KINDS:
                raise ReportedError(f"{where}: uncertainty_kind {kind!r} must be 'ci95', 'se' or empty")
            if bool(raw_unc) != bool(kind):
                raise ReportedError(f"{where}: ci95_or_se and uncertainty_kind must both be set or both be empty")
            if raw_unc and _percent(raw_unc, where, "ci95_or_se") == 0.0:
                raise ReportedError(f"{where}: ci95_or_se is 0, a zero-width interval no study reports; write the "
                                    "published value, or leave ci95_or_se and uncertainty_kind empty")
            rows.append(ReportedRow(
                source=rec["source"].strip(), dataset=rec["dataset"].strip(),
                base_model=(rec.get("base_model") or "").strip(), method=rec["method"].strip(),
                accuracy=_percent(rec.get("accuracy") or "", where, "accuracy"),
                uncertainty=_percent(raw_unc, where, "ci95_or_se") if raw_unc else None,
                uncertainty_kind=kind, note=(rec.get("note") or "").strip() or None,
                citation_url=(rec.get("citation_url") or "").strip() or None, line=i,
            ))
    return rows
