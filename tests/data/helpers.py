"""Shared helpers for the data tests: fixture paths and record-file utilities."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ARENA_DIR = FIXTURES / "chatbot_arena_conversations"
PRISM_DIR = FIXTURES / "prism-alignment"
PUBLISHED_DIR = FIXTURES / "published"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def hub_copy(tmp: Path, repo_name: str, edit: Callable[[str, list[dict[str, Any]]], None] | None = None) -> Path:
    """A local copy of a published hub repo: <repo_name>/data/<split>-00000-of-00001.parquet.
    ``edit(hub_split, rows)`` may change a split's rows in place before they are written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = tmp / repo_name
    (out / "data").mkdir(parents=True)
    for split in ("train", "validation", "test"):
        rows = read_jsonl(PUBLISHED_DIR / repo_name / f"{split}.jsonl")
        if edit is not None:
            edit(split, rows)
        pq.write_table(pa.Table.from_pylist(rows), out / "data" / f"{split}-00000-of-00001.parquet")
    (out / "README.md").write_text("local copy for tests\n")
    return out
