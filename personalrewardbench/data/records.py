"""Reading record files (jsonl, json arrays, parquet) and hub rows, every string checked once.

Local files are read streaming (jsonl line by line, parquet batch by batch) so every record
carries a human-readable location ("file.jsonl line 12") for messages. Whatever the bytes:

- a UTF-8 byte-order mark is skipped; a UTF-16/32 file is refused with the fix (save as UTF-8);
- bytes that are not UTF-8, unpaired surrogates and NUL characters inside strings become U+FFFD
  and are counted in the :class:`~personalrewardbench.data.text.Findings` (file, line, field);
- a line that is not JSON, or a last line cut short, is one DataError naming the line;
- a parquet file with non-UTF-8 strings is re-read with its string columns as bytes and repaired
  the same way; a corrupt or truncated parquet file is one DataError.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from personalrewardbench.data.errors import DataError
from personalrewardbench.data.text import Findings

RECORD_SUFFIXES = (".jsonl", ".json", ".parquet")
UTF8_BOM = b"\xef\xbb\xbf"
_OTHER_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16",
               b"\xfe\xff": "UTF-16"}
# A line needs the field walk only if it may hold a surrogate escape or a NUL.
_SUSPECT = re.compile(r"\\u[dD][89a-fA-F]|\\u0000|\x00")


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


def _check_record(rec: Any, where: str, dataset: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(rec, dict):
        raise DataError(f"{dataset}: {where}: expected a JSON object, got {type(rec).__name__}. Fix that record.")
    return where, rec


def _clean(findings: Findings, rec: Any, where: str, dataset: str, from_bytes: bool = False) -> Any:
    try:
        return findings.clean(rec, where, from_bytes=from_bytes)
    except RecursionError as exc:
        raise DataError(f"{dataset}: {where}: the record is nested too deeply to read. Fix or remove it.") from exc


def _decode(raw: bytes) -> tuple[str, bool]:
    """Text of ``raw`` and whether it held bytes that are not UTF-8 (kept as lone surrogates)."""
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return raw.decode("utf-8", "surrogateescape"), True


def _start(path: Path, dataset: str) -> bytes:
    with open(path, "rb") as f:
        head = f.read(4096)
    for bom, enc in _OTHER_BOMS.items():
        if head.startswith(bom):
            raise DataError(f"{dataset}: {path}: the file is {enc}-encoded; records must be UTF-8. "
                            f"Convert it (e.g. `iconv -f {enc} -t UTF-8`) and load it again.")
    return head[len(UTF8_BOM):] if head.startswith(UTF8_BOM) else head


def iter_records(path: Path, *, dataset: str, findings: Findings) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (location, record) from a jsonl/json/parquet file, streaming, text repaired and counted
    in ``findings``. Raises DataError (never another exception) for unreadable files."""
    if not path.exists():
        raise DataError(f"{dataset}: file not found: {path}. Check the path.")
    if path.suffix == ".parquet":
        yield from _parquet_records(path, dataset, findings)
        return
    head = _start(path, dataset)
    if path.suffix == ".json" and head.lstrip()[:1] == b"[":
        yield from _json_array_records(path, dataset, findings)
        return
    yield from _jsonl_records(path, dataset, findings)


def _jsonl_records(path: Path, dataset: str, findings: Findings) -> Iterator[tuple[str, dict[str, Any]]]:
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if lineno == 1 and raw.startswith(UTF8_BOM):
                raw = raw[len(UTF8_BOM):]
            if not raw.strip():
                continue
            where = f"{path.name} line {lineno}"
            line, bad_bytes = _decode(raw)
            try:
                rec = json.loads(line, strict=False)  # strict=False: control characters inside strings are text
            except json.JSONDecodeError as exc:
                if not raw.endswith(b"\n"):
                    raise DataError(f"{dataset}: {where}: the last line is cut short ({exc.msg}); the file was "
                                    "truncated while writing or downloading. Download it again, or remove that "
                                    "line.") from exc
                raise DataError(f"{dataset}: {where}: invalid JSON ({exc.msg}). Fix or remove that line.") from exc
            except RecursionError as exc:
                raise DataError(f"{dataset}: {where}: JSON nested too deeply to read. Fix or remove that line.") \
                    from exc
            if bad_bytes or _SUSPECT.search(line):
                rec = _clean(findings, rec, where, dataset, bad_bytes)
            yield _check_record(rec, where, dataset)


def _json_array_records(path: Path, dataset: str, findings: Findings) -> Iterator[tuple[str, dict[str, Any]]]:
    raw = path.read_bytes()
    if raw.startswith(UTF8_BOM):
        raw = raw[len(UTF8_BOM):]
    text, bad_bytes = _decode(raw)
    try:
        data = json.loads(text, strict=False)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise DataError(f"{dataset}: {path}: invalid JSON ({exc}). Fix or re-download the file.") from exc
    for i, rec in enumerate(data):
        where = f"{path.name} item {i}"
        yield _check_record(_clean(findings, rec, where, dataset, bad_bytes), where, dataset)


def _binary_strings(t: Any) -> Any:
    """An arrow type with every string type swapped for the matching binary type."""
    import pyarrow as pa

    if pa.types.is_string(t):
        return pa.binary()
    if pa.types.is_large_string(t):
        return pa.large_binary()
    if pa.types.is_list(t):
        return pa.list_(_binary_strings(t.value_type))
    if pa.types.is_large_list(t):
        return pa.large_list(_binary_strings(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _binary_strings(f.type), f.nullable) for f in t])
    if pa.types.is_map(t):
        return pa.map_(_binary_strings(t.key_type), _binary_strings(t.item_type))
    return t


def _parquet_records(path: Path, dataset: str, findings: Findings) -> Iterator[tuple[str, dict[str, Any]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def unreadable(exc: BaseException) -> DataError:
        return DataError(f"{dataset}: {path}: not a readable parquet file ({type(exc).__name__}: "
                         f"{str(exc)[:200]}). Re-download or rewrite the file.")

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise unreadable(exc) from exc
    i = 0
    batches = pf.iter_batches(batch_size=2048)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as exc:  # a truncated or corrupt column chunk
            raise unreadable(exc) from exc
        try:
            rows, from_bytes = batch.to_pylist(), False
        except UnicodeDecodeError:  # strings that are not UTF-8: read them as bytes and repair
            schema = pa.schema([pa.field(f.name, _binary_strings(f.type), f.nullable) for f in batch.schema])
            rows, from_bytes = batch.cast(schema).to_pylist(), True
        for rec in rows:
            where = f"{path.name} row {i}"
            yield where, _clean(findings, rec, where, dataset, from_bytes)
            i += 1


def iter_hub_rows(rows: Iterable[Mapping[str, Any]], label: str, findings: Findings,
                  *, dataset: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(``"<label> row i"``, repaired record) for rows of a `datasets` split."""
    it = iter(rows)
    i = 0
    while True:
        where = f"{label} row {i}"
        try:
            rec = next(it)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:
            raise DataError(f"{dataset}: {where}: holds bytes that are not UTF-8 ({exc.reason}). Download a local "
                            "copy and pass its path: the local reader repairs such text and counts it.") from exc
        yield where, _clean(findings, dict(rec), where, dataset)
        i += 1


def first_record(path: Path) -> dict[str, Any] | None:
    """The first record of the first record file under ``path`` (for sniffing the schema)."""
    for f in record_files(path):
        for _, rec in iter_records(f, dataset=f.stem, findings=Findings()):
            return rec
    return None
