"""Small helpers shared by the data sources: hashing, roles, the published message shapes.

Reading record files lives in :mod:`personalrewardbench.data.records` (re-exported here).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from personalrewardbench.data.errors import DataError
from personalrewardbench.data.records import (  # noqa: F401 - re-exported for the sources
    RECORD_SUFFIXES,
    first_record,
    iter_records,
    record_files,
)
from personalrewardbench.data.schema import Message
from personalrewardbench.data.text import (
    RESPONSE_SHAPE_MISMATCH,
    STRING_CONTEXT,
    Findings,
    parse_serialized_messages,
    serialized_message,
)

ROLE_ALIASES = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "model": "assistant",
    "gpt": "assistant",
    "bot": "assistant",
    "system": "system",
}


def stable_hash(*parts: object, n: int = 64) -> str:
    """Hex sha256 of the parts (joined by an unprintable separator), first ``n`` chars."""
    key = "\x1f".join(str(p) for p in parts).encode("utf-8", "surrogatepass")
    return hashlib.sha256(key).hexdigest()[:n]


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def user_id_from(value: Any, *, dataset: str, where: str, field: str = "user_id") -> str:
    """A user id as text: a string as it is, an integer as its decimal text (so 1 and "1" are one
    user). Anything else (a float such as 101.0 or NaN, a boolean, a list, an object) raises
    DataError naming ``where`` and ``field``: ``str()`` would make users "101.0", "nan", "True"."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    hint = (" (a float id comes from a pandas column of integers with a missing value: write ids as strings)"
            if isinstance(value, float) else "")
    raise DataError(f"{dataset}: {where}: field {field!r} is {str(value)[:60]!r} ({type(value).__name__}); a user id "
                    f"must be a string or an integer{hint}. Fix the record.")


def bool_field(rec: Mapping[str, Any], field: str, *, dataset: str, where: str) -> bool | None:
    """``rec[field]`` when it is a boolean, None when missing or null; DataError otherwise (a string
    "False" is truthy: it would silently mean True)."""
    v = rec.get(field)
    if v is None or isinstance(v, bool):
        return v
    raise DataError(f"{dataset}: {where}: field {field!r} is {str(v)[:60]!r} ({type(v).__name__}); expected true, "
                    "false or null. Fix the record.")


def normalize_role(role: Any, *, dataset: str, where: str, field: str) -> str:
    r = ROLE_ALIASES.get(str(role).strip().lower()) if isinstance(role, str) else None
    if r is None:
        raise DataError(
            f"{dataset}: {where}: field {field!r} has role {role!r}; expected one of "
            f"{sorted(set(ROLE_ALIASES))}. Fix the role in the file or drop the row."
        )
    return r


def messages_from(value: Any, *, dataset: str, where: str, field: str,
                  findings: Findings | None = None) -> tuple[Message, ...]:
    """A context in the published schema (list of {role, content}) as Messages.

    A context stored as a string (plain text, or a JSON/Python-literal string of a message list:
    a CSV round trip) is an error naming ``where`` and ``field``; with ``findings`` (an official
    published benchmark, which is never refused for such quirks) it is read instead, as the
    messages it holds or as one user message, and counted as ``string_context``.
    """
    if isinstance(value, str):
        parsed = parse_serialized_messages(value)
        what = f"a string holding a serialized list of {len(parsed)} messages" if parsed else "a string"
        if findings is None:
            raise DataError(f"{dataset}: {where}: field {field!r} is {what}, not a list of {{role, content}} "
                            "messages (a CSV or pandas round trip turns lists into text). Write the context as a "
                            "JSON list of objects.")
        findings.warn(STRING_CONTEXT, f"{where}: field {field} is {what}")
        value = parsed if parsed else [{"role": "user", "content": value}]
    if hasattr(value, "tolist"):  # numpy arrays from pandas
        value = value.tolist()
    if not isinstance(value, Sequence) or isinstance(value, bytes | bytearray):
        raise DataError(
            f"{dataset}: {where}: field {field!r} must be a list of {{role, content}} messages, "
            f"got {type(value).__name__}. Fix the row (see README, Data section)."
        )
    out = []
    for i, m in enumerate(value):
        if isinstance(m, str):
            raise DataError(f"{dataset}: {where}: field {field}[{i}] is a string "
                            f"({serialized_message(m) or 'plain text'}), not an object with 'role' and 'content'. "
                            "Write each message as a JSON object.")
        if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
            raise DataError(
                f"{dataset}: {where}: field {field}[{i}] must be an object with 'role' and 'content'. Fix the row."
            )
        content = m["content"]
        if not isinstance(content, str):
            raise DataError(f"{dataset}: {where}: field {field}[{i}].content must be a string, got "
                            f"{type(content).__name__}. Fix the row.")
        out.append(Message(normalize_role(m["role"], dataset=dataset, where=where, field=f"{field}[{i}].role"),
                           content))
    return tuple(out)


def response_text(value: Any, *, dataset: str, where: str, field: str) -> tuple[str, str | None]:
    """A response in the published schema ({role: "model", content}) or a plain string, as
    (text, normalized role or None for a plain string)."""
    if isinstance(value, str):
        return value, None
    if isinstance(value, Mapping) and isinstance(value.get("content"), str):
        role = value.get("role")
        return value["content"], (None if role is None else
                                  normalize_role(role, dataset=dataset, where=where, field=f"{field}.role"))
    if isinstance(value, Mapping) and "content" in value:
        content = value["content"]
        hint = (" (a list of content parts, as in the OpenAI multimodal format? join its text parts into one string)"
                if isinstance(content, list) else "")
        raise DataError(f"{dataset}: {where}: field '{field}.content' must be a string, got "
                        f"{type(content).__name__}{hint}. Fix the row.")
    raise DataError(
        f"{dataset}: {where}: field {field!r} must be a string or an object {{role, content}} "
        f"with string content, got {type(value).__name__}. Fix the row."
    )


def response_pair(chosen: Any, rejected: Any, *, dataset: str, where: str,
                  findings: Findings | None = None) -> tuple[str, str]:
    """The texts of a row's chosen and rejected responses, after checking they have the same shape.

    Chosen and rejected of different types (an object and a string: one was serialized on the
    way) or of different roles, or a response role that is not the assistant's, is an error naming
    the row and fields; with ``findings`` (official published data) it is counted as
    ``response_shape_mismatch`` and the row kept as published.
    """
    (c_text, c_role), (r_text, r_role) = (response_text(chosen, dataset=dataset, where=where, field="chosen"),
                                          response_text(rejected, dataset=dataset, where=where, field="rejected"))
    problem = None
    if isinstance(chosen, str) != isinstance(rejected, str):
        obj, txt = ("chosen", "rejected") if isinstance(rejected, str) else ("rejected", "chosen")
        inner = serialized_message(rejected if txt == "rejected" else chosen)
        problem = (f"field {txt!r} is a string{f' ({inner})' if inner else ''} but {obj!r} is a {{role, content}} "
                   "object: one of them was serialized on the way (a CSV or pandas round trip)")
    elif c_role != r_role:
        problem = f"fields 'chosen' and 'rejected' have different roles ({c_role!r} and {r_role!r})"
    elif c_role not in (None, "assistant"):
        problem = f"fields 'chosen' and 'rejected' have role {c_role!r}; responses are the assistant's turn"
    if problem:
        if findings is None:
            raise DataError(f"{dataset}: {where}: {problem}. Write both responses the same way: "
                            "{\"role\": \"model\", \"content\": TEXT} objects, or both plain strings.")
        findings.warn(RESPONSE_SHAPE_MISMATCH, f"{where}: {problem}")
    return c_text, r_text


def default_cache_dir() -> Path:
    """``$PRB_CACHE_DIR/data`` if set, else ``.prb-cache/data`` under the working directory."""
    env = os.environ.get("PRB_CACHE_DIR")
    return (Path(env) if env else Path(".prb-cache")) / "data"
