"""Reading record files (jsonl, json arrays, parquet) and hub rows, every string checked once.

Local files are read streaming (jsonl line by line, parquet batch by batch) so every record
carries a human-readable location ("file.jsonl line 12") for messages. Whatever the bytes:

- a UTF-8 byte-order mark is skipped; a UTF-16/32 file (with or without a byte-order mark) or a
  compressed file (gzip, zip, ...) under a .jsonl/.json name is refused with the fix;
- bytes that are not UTF-8, unpaired surrogates and NUL characters inside strings become U+FFFD
  and are counted in the :class:`~personalrewardbench.data.text.Findings` (file, line, field);
- a line that is not JSON (a number too long to read, two objects on one line, an object with
  the same key twice holding different values), or a last line cut short, is one DataError
  naming the line;
- a parquet file with non-UTF-8 strings is re-read with its string columns as bytes and repaired
  the same way; a corrupt or truncated parquet file, or one with a column (or struct field) name
  twice, is one DataError.
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
_MAGIC = {b"\x1f\x8b": ("gzip-compressed", "gunzip it"), b"PK\x03\x04": ("a zip archive", "unzip it"),
          b"BZh": ("bzip2-compressed", "bunzip2 it"), b"\xfd7zXZ\x00": ("xz-compressed", "unxz it"),
          b"\x28\xb5\x2f\xfd": ("zstd-compressed", "unzstd it"),
          b"PAR1": ("a parquet file", "give it the .parquet suffix")}
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


class _DuplicateKey(ValueError):
    def __init__(self, key: str, values: tuple[Any, Any]) -> None:
        super().__init__(key)
        self.key, self.values = key, values


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json ``object_pairs_hook``: a dict, refusing a key given twice with different values (json
    would keep the last one silently)."""
    d = dict(pairs)
    if len(d) != len(pairs):
        for k, v in pairs:
            if d[k] is not v and d[k] != v:
                raise _DuplicateKey(k, (v, d[k]))
    return d


def _json_error(exc: ValueError) -> str:
    """What is wrong with a JSON text, for a message."""
    if isinstance(exc, _DuplicateKey):
        a, b = (repr(v)[:60] for v in exc.values)
        return (f"key {exc.key!r} appears twice in one object, with different values ({a} and {b}); "
                "JSON keys must be unique, keep the right one")
    if isinstance(exc, json.JSONDecodeError):
        return exc.msg if exc.msg != "Extra data" else (f"Extra data: a second JSON value starts at column {exc.colno}; "
                                                        "write one record per line")
    if "integer string conversion" in str(exc):  # Python refuses int literals over 4300 digits
        return "a number with more than 4300 digits"
    return str(exc)[:160]


def _encoding_problem(head: bytes) -> tuple[str, str] | None:
    """(what the file is, the fix) for a compressed or UTF-16/32 file, else None."""
    for bom, enc in _OTHER_BOMS.items():
        if head.startswith(bom):
            return f"{enc}-encoded", f"convert it to UTF-8 (e.g. `iconv -f {enc} -t UTF-8`)"
    for magic, (what, fix) in _MAGIC.items():
        if head.startswith(magic):
            return what, fix
    even, odd = head[0:128:2], head[1:128:2]
    if len(odd) >= 2 and odd.count(0) * 2 > len(odd) and not even.count(0):
        return "UTF-16-encoded (little-endian, no byte-order mark)", "convert it (`iconv -f UTF-16LE -t UTF-8`)"
    if len(odd) >= 2 and even.count(0) * 2 > len(even) and not odd.count(0):
        return "UTF-16-encoded (big-endian, no byte-order mark)", "convert it (`iconv -f UTF-16BE -t UTF-8`)"
    return None


def _start(path: Path, dataset: str) -> bytes:
    with open(path, "rb") as f:
        head = f.read(4096)
    if problem := _encoding_problem(head):
        what, fix = problem
        raise DataError(f"{dataset}: {path}: the file is {what}; records must be UTF-8 JSON text. "
                        f"{fix[0].upper()}{fix[1:]} and load it again.")
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
            try:  # strict=False: control characters inside strings are text
                rec = json.loads(line, strict=False, object_pairs_hook=_object)
            except json.JSONDecodeError as exc:
                if not raw.endswith(b"\n") and exc.msg != "Extra data":
                    raise DataError(f"{dataset}: {where}: the last line is cut short ({exc.msg}); the file was "
                                    "truncated while writing or downloading. Download it again, or remove that "
                                    "line.") from exc
                cr = " (its lines end with CR alone: convert them to LF)" if b"\r" in raw.rstrip(b"\r\n") else ""
                raise DataError(f"{dataset}: {where}: invalid JSON ({_json_error(exc)}){cr}. Fix or remove that "
                                "line.") from exc
            except ValueError as exc:  # a repeated key; an integer literal too long to convert
                raise DataError(f"{dataset}: {where}: invalid JSON ({_json_error(exc)}). Fix or remove that line.") \
                    from exc
            except RecursionError as exc:
                raise DataError(f"{dataset}: {where}: JSON nested too deeply to read. Fix or remove that line.") \
                    from exc
            suspect = bad_bytes or _SUSPECT.search(line)
            del raw, line  # the record holds the text now: one copy alive while the caller uses it
            if suspect:
                rec = _clean(findings, rec, where, dataset, bad_bytes)
            yield _check_record(rec, where, dataset)


def _json_array_records(path: Path, dataset: str, findings: Findings) -> Iterator[tuple[str, dict[str, Any]]]:
    raw = path.read_bytes()
    if raw.startswith(UTF8_BOM):
        raw = raw[len(UTF8_BOM):]
    text, bad_bytes = _decode(raw)
    try:
        data = json.loads(text, strict=False, object_pairs_hook=_object)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, a repeated key, a too-long integer
        what = _json_error(exc) if isinstance(exc, ValueError) else "nested too deeply"
        raise DataError(f"{dataset}: {path}: invalid JSON ({what}). Fix or re-download the file.") from exc
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


def _repeated_name(schema: Any, prefix: str = "") -> str | None:
    """The first column or struct field name given twice in an arrow schema/struct, dotted."""
    import pyarrow as pa

    names = [f.name for f in schema]
    for f in schema:
        if names.count(f.name) > 1:
            return prefix + f.name
        t = f.type
        while pa.types.is_list(t) or pa.types.is_large_list(t):
            t = t.value_type
        if pa.types.is_struct(t) and (inner := _repeated_name(t, f"{prefix}{f.name}.")):
            return inner
    return None


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
    if dup := _repeated_name(pf.schema_arrow):
        raise DataError(f"{dataset}: {path}: column {dup!r} appears more than once; a row would keep only the last "
                        "one. Rewrite the file with each column once.")
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
