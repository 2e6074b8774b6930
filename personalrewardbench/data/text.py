"""Text hygiene and shape checks, in one place: every string read from any source passes here once.

- :class:`Findings` collects what reading a dataset found (repaired text, quirks of a published
  benchmark), as counts per kind plus the first locations of each ("file.jsonl line 3: field
  chosen.content"); the counts and locations go into the manifest.
- :meth:`Findings.clean` repairs text that cannot be encoded: bytes that are not UTF-8 and
  unpaired UTF-16 surrogates (an emoji cut in half, ``"\\ud83d"``: valid JSON, invalid Unicode)
  become U+FFFD; NUL characters become U+FFFD too (they break C strings, SQLite text and
  terminals). Each repaired field is one warning.
- :func:`normalize_text` is the form every duplicate and leakage check compares: Unicode format
  characters (category Cf: zero-width space, soft hyphen, byte-order mark, ...) and the other
  default-ignorable code points (Hangul fillers, variation selectors; and the Braille blank) removed, Unicode
  NFKC, whitespace runs collapsed to one space, stripped (so "a  b\\n" and "a\\u200b b" repeat "a b").
  :func:`comparison_context` is a context in that form, its empty messages left out.
- :meth:`Findings.finite` replaces NaN/Infinity in meta and profile fields by null (counted).
- :func:`serialized_message` spots a message object that was turned into a string (a CSV or
  pandas round trip writes ``{'role': 'model', 'content': '...'}`` where the text should be).
"""

from __future__ import annotations

import ast
import functools
import json
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

REPLACEMENT = "\ufffd"
MAX_LOCATIONS = 20  # locations kept per warning kind (the count is always exact)

# Kinds of repaired text (warnings; errors under `prb data validate --strict`).
TEXT_INVALID_UTF8 = "text_invalid_utf8"
TEXT_UNPAIRED_SURROGATE = "text_unpaired_surrogate"
TEXT_NUL = "text_nul_character"
TEXT_REPAIRS = (TEXT_INVALID_UTF8, TEXT_UNPAIRED_SURROGATE, TEXT_NUL)

# Content quirks of an official published benchmark: warnings there, errors for local/built data.
SPLIT_DISAGREEMENT = "split_disagreement"
IDENTICAL_RESPONSES = "identical_responses"
EMPTY_RESPONSE = "empty_response"
EMPTY_CONTEXT_MESSAGE = "empty_context_message"  # a message empty after normalize_text (e.g. "\u200b", "  ")
EMPTY_CONTEXT = "empty_context"  # no context message has any text after normalize_text
TEST_REPEATS_HISTORY = "test_repeats_history"
SERIALIZED_MESSAGE = "serialized_message"
RESPONSE_SHAPE_MISMATCH = "response_shape_mismatch"
STRING_CONTEXT = "string_context"
USER_ID_VARIANTS = "user_id_variants"  # ids equal after normalize_text ("u1" and "u1 "): one user split in two?
CONTENT_QUIRKS = (SPLIT_DISAGREEMENT, IDENTICAL_RESPONSES, EMPTY_RESPONSE, EMPTY_CONTEXT_MESSAGE, EMPTY_CONTEXT,
                  TEST_REPEATS_HISTORY, SERIALIZED_MESSAGE, RESPONSE_SHAPE_MISMATCH, STRING_CONTEXT, USER_ID_VARIANTS)
# Always warnings: a split value read through an alias or after stripping/case-folding (" Test").
SPLIT_VALUE_NORMALIZED = "split_value_normalized"
NON_FINITE_NUMBER = "non_finite_number"  # NaN/Infinity in a meta or profile field, written as null
VERY_LONG_TEXT = "very_long_text"  # a context message or response over validate.VERY_LONG_CHARS characters
FORMAT_MARK_ONE_SIDED = "format_mark_one_sided"  # a surface mark that reads the label (data/marks.py)
HUB_LAYOUT_NOT_OFFICIAL = "hub_layout_not_official"  # hub-named split files outside the hub repo's layout
# what `prb data validate --strict` refuses
STRICT_KINDS = TEXT_REPAIRS + CONTENT_QUIRKS + (NON_FINITE_NUMBER, FORMAT_MARK_ONE_SIDED)

_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPED = re.compile("[\udc80-\udcff]")  # what bytes.decode("utf-8", "surrogateescape") makes of bad bytes


@functools.cache
def format_char_pattern() -> re.Pattern[str]:
    """Every Unicode format character (category Cf) as one character class. They lie below
    U+20000 or in the tag block U+E0000-U+E0FFF; the scan runs once, on the first non-ASCII text."""
    points = [c for r in (range(0x80, 0x20000), range(0xE0000, 0xE1000)) for c in r
              if unicodedata.category(chr(c)) == "Cf"]
    ranges: list[list[int]] = []  # contiguous runs as a-b ranges: ~8x faster to match than single characters
    for c in points:
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1][1] = c
        else:
            ranges.append([c, c])
    return re.compile("[" + "".join(re.escape(chr(a)) + (f"-{re.escape(chr(b))}" if b > a else "")
                                    for a, b in ranges) + "]")


# Invisible code points that are not format characters (Cf), removed too before a text is compared or
# judged empty: the Default_Ignorable_Code_Point characters of other categories (Unicode
# DerivedCoreProperties.txt: combining grapheme joiner U+034F, Hangul fillers U+115F, U+1160, U+3164,
# U+FFA0, Khmer inherent vowels U+17B4-5, Mongolian variation selectors U+180B-D and U+180F, variation
# selectors U+FE00-F and U+E0100-E01EF) and the Braille pattern blank U+2800, which renders as a blank.
_IGNORABLE = re.compile("[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180d\u180f\u2800\u3164\ufe00-\ufe0f\uffa0"
                        "\U000e0100-\U000e01ef]")


LONG_TEXT = 1 << 20  # characters; longer texts are normalized piecewise and not cached (bounded memory)
_PIECE = 1 << 16


def _collapse(s: str) -> str:
    """Whitespace runs -> one space, stripped: ``" ".join(s.split())``, done piecewise for a long text
    so the word list never holds more than one piece (``split`` of a 200 MB text makes ~10^7 string
    objects: ~15x its size)."""
    if len(s) <= LONG_TEXT:
        return " ".join(s.split())
    out: list[str] = []
    gap = False  # whitespace seen since the last word written
    for i in range(0, len(s), _PIECE):
        piece = s[i:i + _PIECE]
        words = piece.split()
        if words:
            if out and (gap or piece[0].isspace()):
                out.append(" ")
            out.append(" ".join(words))
            gap = piece[-1].isspace()
        else:
            gap = gap or bool(piece)
    return "".join(out)


def _normalize(s: str) -> str:
    if s.isascii():
        return _collapse(s)
    return _collapse(unicodedata.normalize("NFKC", _IGNORABLE.sub("", format_char_pattern().sub("", s))))


_normalize_cached = functools.lru_cache(maxsize=1 << 16)(_normalize)


def normalize_text(s: str) -> str:
    """The comparison form of a text: format characters (Cf) and the other invisible code points
    (:data:`_IGNORABLE`: Hangul fillers, variation selectors, the Braille blank, ...) removed, NFKC,
    whitespace runs -> one space, stripped. (Cached below :data:`LONG_TEXT` characters: the same context messages and
    responses are compared many times; a longer text is not kept alive by the cache.)"""
    return _normalize_cached(s) if len(s) <= LONG_TEXT else _normalize(s)


def comparison_context(context: Iterable[Any]) -> tuple[tuple[str, str], ...]:
    """A context (messages with ``role`` and ``content``) in the form every repeat and leakage check
    compares: ((role, normalized content), ...) with the messages that normalize to nothing left out
    (an empty system prompt, an empty turn): a pair repeated with an empty system message added is
    still a repeat."""
    out = []
    for m in context:
        if text := normalize_text(m.content):
            out.append((m.role, text))
    return tuple(out)


class Findings:
    """Counts and first locations of what reading one dataset found (see module doc)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.locations: dict[str, list[str]] = {}

    def warn(self, kind: str, where: str, n: int = 1) -> None:
        """Count ``n`` of ``kind`` at ``where`` (a file/row and field description)."""
        self.counts[kind] += n
        locs = self.locations.setdefault(kind, [])
        if len(locs) < MAX_LOCATIONS:
            locs.append(where)

    def update(self, counts: Mapping[str, int], locations: Mapping[str, list[str]] | None = None) -> None:
        self.counts.update({k: v for k, v in counts.items() if v})
        for k, locs in (locations or {}).items():
            mine = self.locations.setdefault(k, [])
            mine.extend(locs[: max(0, MAX_LOCATIONS - len(mine))])

    def warnings(self) -> dict[str, int]:
        return {k: v for k, v in sorted(self.counts.items()) if v}

    def where(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in sorted(self.locations.items()) if v}

    def finite(self, value: Any, where: str, path: str = "") -> Any:
        """``value`` (a JSON-like tree) with every NaN/Infinity float replaced by None, each one counted
        as ``non_finite_number`` at ``where: field <path>``; containers are copied only where something
        changed. (JSON has no NaN: ``json.dumps`` would write the non-standard token ``NaN``.)"""
        if isinstance(value, float):
            if math.isfinite(value):
                return value
            self.warn(NON_FINITE_NUMBER, f"{where}: field {path or '<value>'} is {value!r}, written as null")
            return None
        if isinstance(value, Mapping):
            new = {k: self.finite(v, where, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
            return new if any(new[k] is not v for k, v in value.items()) else value
        if isinstance(value, list | tuple):
            items = [self.finite(v, where, f"{path}[{i}]") for i, v in enumerate(value)]
            return value if all(a is b for a, b in zip(items, value, strict=True)) else type(value)(items)
        return value

    # -- text ---------------------------------------------------------------------------------

    def clean(self, value: Any, where: str, *, from_bytes: bool = False, path: str = "") -> Any:
        """``value`` (a record, list, string, or bytes from a binary fallback) with every string
        repaired; each repaired field is counted at ``where: field <path>``. Containers are copied
        only where something changed."""
        if isinstance(value, str):
            return self._clean_str(value, where, path, from_bytes)
        if isinstance(value, dict):
            items, changed = [], False
            for k, v in value.items():
                key = self._clean_str(k, where, f"{path}.<key>" if path else "<key>", from_bytes) \
                    if isinstance(k, str) else k
                nv = self.clean(v, where, from_bytes=from_bytes, path=f"{path}.{key}" if path else str(key))
                changed = changed or nv is not v or key is not k
                items.append((key, nv))
            return dict(items) if changed else value
        if isinstance(value, list | tuple):
            new = [self.clean(v, where, from_bytes=from_bytes, path=f"{path}[{i}]") for i, v in enumerate(value)]
            return value if all(a is b for a, b in zip(new, value, strict=True)) else type(value)(new)
        if from_bytes and isinstance(value, bytes | bytearray):
            return self._clean_str(bytes(value).decode("utf-8", "surrogateescape"), where, path, True)
        return value

    def _clean_str(self, s: str, where: str, path: str, from_bytes: bool) -> str:
        if s.isascii():
            if "\x00" not in s:
                return s
        else:
            try:
                s.encode("utf-8")
            except UnicodeEncodeError:
                kind = TEXT_INVALID_UTF8 if from_bytes and _ESCAPED.search(s) else TEXT_UNPAIRED_SURROGATE
                self.warn(kind, f"{where}: field {path or '<value>'}")
                # utf-16 with surrogatepass joins split surrogate pairs; 'replace' turns lone ones into U+FFFD
                s = _SURROGATE.sub(REPLACEMENT, s.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace"))
            if "\x00" not in s:
                return s
        self.warn(TEXT_NUL, f"{where}: field {path or '<value>'}")
        return s.replace("\x00", REPLACEMENT)


def _is_message(v: Any) -> bool:
    return isinstance(v, Mapping) and isinstance(v.get("role"), str) and isinstance(v.get("content"), str)


_MESSAGE_START = re.compile(r"""^\{\s*['"](role|content)['"]\s*:""")


def serialized_message(text: str) -> str | None:
    """A short description if ``text`` is a message object (or a list of them) written as a string
    (JSON or Python repr, e.g. ``"{'role': 'model', 'content': '...'}"``), else None."""
    t = text.strip()
    if len(t) < 2 or (t[0], t[-1]) not in (("{", "}"), ("[", "]")) or "role" not in t or "content" not in t:
        return None
    for parse in (json.loads, ast.literal_eval):
        try:
            v = parse(t)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if _is_message(v):
            return f"a serialized message object with role {v['role']!r}"
        if isinstance(v, list) and v and all(_is_message(m) for m in v):
            return f"a serialized list of {len(v)} message objects"
    if _MESSAGE_START.match(t):
        return "text that starts like a serialized message object"
    return None


def parse_serialized_messages(text: str) -> list[dict[str, str]] | None:
    """The messages a string holds when it is a JSON / Python-literal list of {role, content}
    objects (or one such object), else None."""
    t = text.strip()
    for parse in (json.loads, ast.literal_eval):
        try:
            v = parse(t)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if _is_message(v):
            return [dict(v)]
        if isinstance(v, list) and v and all(_is_message(m) for m in v):
            return [dict(m) for m in v]
    return None
