"""A Benchmark as rows of the published hub schema (the inverse of
:func:`personalrewardbench.data.published.benchmark_from_rows`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from personalrewardbench.data.errors import DataError
from personalrewardbench.data.schema import Benchmark
from personalrewardbench.data.store import standard_json


def published_rows(bench: Benchmark) -> list[dict[str, Any]]:
    """user_id, context, chosen/rejected ({role: "model", content}), split, then every meta field."""
    rows = []
    for p in bench.pairs:
        row: dict[str, Any] = {
            "user_id": p.user_id,
            "context": [m.to_dict() for m in p.context],
            "chosen": {"role": "model", "content": p.chosen},
            "rejected": {"role": "model", "content": p.rejected},
            "split": p.split,
        }
        row.update({k: v for k, v in p.meta.items() if k not in row})
        row.setdefault("conversation_id", p.pair_id)
        rows.append(row)
    return rows


def write_published_rows(bench: Benchmark, out: Path, *, fmt: str = "jsonl") -> Path:
    rows = published_rows(bench)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        with open(out, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(standard_json(r, bench.name, f"row {r['conversation_id']!r}", sort_keys=True) + "\n")
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            pq.write_table(pa.Table.from_pylist(rows), out)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise DataError(f"{bench.name}: meta fields have mixed types and cannot be written as parquet ({exc}); "
                            "export --format jsonl instead.") from exc
    else:
        raise DataError(f"unknown export format {fmt!r}; use built, jsonl or parquet.")
    return out
