"""Small helpers shared by the data sources: hashing, roles, reading record files.

Local files are read streaming (jsonl line by line, parquet batch by batch) so
every record carries a human-readable location ("file.jsonl line 12") for
error messages.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from personalrewardbench.data.errors import DataError
from personalrewardbench.data.schema import Message

ROLE_ALIASES = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "model": "assistant",
    "gpt": "assistant",
    "bot": "assistant",
    "system": "system",
}
RECORD_SUFFIXES = (".jsonl", ".json", ".parquet")


def stable_hash(*parts: object, n: int = 64) -> str:
    """Hex sha256 of the parts (joined by an unprintable separator), first ``n`` chars."""
    key = "\x1f".join(str(p) for p in parts).encode()
    return hashlib.sha256(key).hexdigest()[:n]


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def normalize_role(role: Any, *, dataset: str, where: str, field: str) -> str:
    r = ROLE_ALIASES.get(str(role).strip().lower()) if isinstance(role, str) else None
    if r is None:
        raise DataError(
            f"{dataset}: {where}: field {field!r} has role {role!r}; expected one of "
            f"{sorted(set(ROLE_ALIASES))}. Fix the role in the file or drop the row."
        )
    return r


def messages_from(value: Any, *, dataset: str, where: str, field: str) -> tuple[Message, ...]:
    """A context in the published schema (list of {role, content}) as Messages.

    A bare string is taken as one user message.
    """
    if isinstance(value, str):
        return (Message("user", value),)
    if hasattr(value, "tolist"):  # numpy arrays from pandas
        value = value.tolist()
    if not isinstance(value, Sequence) or isinstance(value, bytes | bytearray):
        raise DataError(
            f"{dataset}: {where}: field {field!r} must be a list of {{role, content}} messages, "
            f"got {type(value).__name__}. Fix the row (see README, Data section)."
        )
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
            raise DataError(
                f"{dataset}: {where}: field {field}[{i}] must be an object with 'role' and 'content'. Fix the row."
            )
        content = m["content"]
        if not isinstance(content, str):
            raise DataError(f"{dataset}: {where}: field {field}[{i}].content must be a string. Fix the row.")
        out.append(Message(normalize_role(m["role"], dataset=dataset, where=where, field=f"{field}[{i}].role"),
                           content))
    return tuple(out)


def response_text(value: Any, *, dataset: str, where: str, field: str) -> str:
    """A response in the published schema ({role: "model", content}) or a plain string."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("content"), str):
        return value["content"]
    raise DataError(
        f"{dataset}: {where}: field {field!r} must be a string or an object {{role, content}} "
        f"with string content, got {type(value).__name__}. Fix the row."
    )


def record_files(path: Path) -> list[Path]:
    """The record files a path stands for: itself, or a folder's data/*.parquet (hub-repo copy)
    or its *.jsonl/*.json/*.parquet files, sorted."""
    if path.is_file():
        return [path]
    if (path / "data").is_dir():
        files = sorted(p for p in (path / "data").rglob("*") if p.suffix in RECORD_SUFFIXES)
        if files:
            return files
    return sorted(p for p in path.iterdir() if p.is_file() and p.suffix in RECORD_SUFFIXES)


def iter_records(path: Path, *, dataset: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (location, record) from a jsonl/json/parquet file, streaming."""
    if not path.exists():
        raise DataError(f"{dataset}: file not found: {path}. Check the path.")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise DataError(f"{dataset}: {path}: not a readable parquet file ({exc}). Re-download the file.") from exc
        i = 0
        for batch in pf.iter_batches(batch_size=2048):
            for rec in batch.to_pylist():
                yield f"{path.name} row {i}", rec
                i += 1
        return
    with open(path, encoding="utf-8") as f:
        first = f.read(1)
        while first and first.isspace():
            first = f.read(1)
        f.seek(0)
        if path.suffix == ".json" and first == "[":
            try:
                data = json.load(f)
            except json.JSONDecodeError as exc:
                raise DataError(f"{dataset}: {path}: invalid JSON ({exc}). Fix or re-download the file.") from exc
            for i, rec in enumerate(data):
                yield _check_record(rec, f"{path.name} item {i}", dataset)
            return
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path.name} line {lineno}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{dataset}: {where}: invalid JSON ({exc.msg}). Fix or remove that line.") from exc
            yield _check_record(rec, where, dataset)


def _check_record(rec: Any, where: str, dataset: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(rec, dict):
        raise DataError(f"{dataset}: {where}: expected a JSON object, got {type(rec).__name__}. Fix that record.")
    return where, rec


def first_record(path: Path) -> dict[str, Any] | None:
    """The first record of the first record file under ``path`` (for sniffing the schema)."""
    for f in record_files(path):
        for _, rec in iter_records(f, dataset=f.stem):
            return rec
    return None


def default_cache_dir() -> Path:
    """``$PRB_CACHE_DIR/data`` if set, else ``.prb-cache/data`` under the working directory."""
    env = os.environ.get("PRB_CACHE_DIR")
    return (Path(env) if env else Path(".prb-cache")) / "data"
