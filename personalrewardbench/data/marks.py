"""Format marks: surface features of a response text that are not its content.

A format mark is something a pipeline adds to a text, not something a rater judged: invisible
characters and layout (leading/trailing whitespace, line-break style, Unicode normalization form,
zero-width characters, a byte-order mark, non-standard or doubled spaces), or the traces of a
processing step (a speaker prefix such as ``"Assistant:"``, a chat-template special token such as
``"<|im_end|>"``, HTML character references, literal ``\\n`` escapes from double JSON encoding,
mojibake from a wrong decode, U+FFFD from a repair, quotes from a CSV round trip). When a mark sits
on one side of a pair more often than on the other, a one-line check reads the label off it.

Each mark is a *level* of a text (a count, or 0/1); for a pair the mark *differs* when the levels
of the two responses differ, and the *marked side* is the one with the higher level. Nothing here
says which side wins: ``prb data audit`` and ``leak-probe`` learn that from train/val pairs
(:mod:`personalrewardbench.data.leakage`), and validation warns when a mark separates chosen from
rejected in most of a dataset's pairs (:func:`one_sided_marks`).

Left out on purpose, as content a user may prefer: Markdown vs plain text, length, lists, code,
emoji (their zero-width joiners are not counted), indentation at line starts.
"""

from __future__ import annotations

import functools
import html.entities
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from personalrewardbench.data.text import format_char_pattern

# Warn when at least this many pairs of a dataset differ in a mark and at least this share of them
# has the mark on the same side. Under no association (each side equally likely), 90% or more of 20
# pairs on one side has probability 2 * P(Binomial(20, 1/2) >= 18) = 4.0e-4 (scipy.stats.binom.sf),
# so with the 16 marks below a dataset is flagged by chance with probability 1 - (1 - 4.0e-4)^16 = 0.64%.
ONE_SIDED_MIN_PAIRS = 20
ONE_SIDED_SHARE = 0.9

_KEEP_CF = "\u200c\u200d"  # zero-width (non-)joiner: part of emoji sequences and Indic/Persian script
_LINE_BREAK = re.compile(r"\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_ODD_SPACES = re.compile("[\u00a0\u1680\u2000-\u200a\u202f\u205f]")  # not U+3000, the CJK space
_SPACES = re.compile(" {2,}")
_ENTITY = re.compile(r"&(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_ESCAPE = re.compile(r"(?<!\\)\\(?:[nrt]|u[0-9a-fA-F]{4})")
_MOJIBAKE = re.compile("\u00e2\u20ac|[\u00c3\u00c2][\u0080-\u00bf]")  # UTF-8 read as cp1252/latin-1: â€™ Ã© Â
_SPEAKERS = ("assistant|ai assistant|ai|a\\.i\\.|model|bot|chatbot|system|human|user"
             "|(?:chatgpt|gpt|claude|llama|gemini|bard|mistral|vicuna)(?:-[\\w.]+)*")  # 'GPT-4:', 'llama-2-70b:'
_ROLE_PREFIX = re.compile(
    rf"[\s\ufeff\u200b]*(?:[#>*_\[(<|]+\s*)?(?:{_SPEAKERS})(?:\s*[\])>|*_]+)?\s*:"
    r"|[\s\ufeff\u200b]*#{2,}\s*(?:response|output|assistant)\s*:", re.IGNORECASE)  # '### Response:' (Alpaca)
_PIPE_TOKEN = re.compile(r"<\|[A-Za-z0-9_.:-]{1,40}\|>")  # <|im_end|>, <|eot_id|>, <|assistant|>, ...
_TOKENS = ("[INST]", "[/INST]", "<<SYS>>", "<</SYS>>", "<start_of_turn>", "<end_of_turn>", "<eos>", "<bos>", "<pad>",
           "<unk>", "[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]")


def _bounds(t: str) -> tuple[int, int]:
    """(start, end) of ``t`` without its leading and trailing whitespace, without copying ``t``."""
    m = re.match(r"\s*", t)
    i = m.end() if m else 0
    j = len(t)
    while j > i and t[j - 1].isspace():
        j -= 1
    return i, j


def _leading_whitespace(t: str) -> int:
    return _bounds(t)[0]


def _trailing_whitespace(t: str) -> int:
    return len(t) - _bounds(t)[1]


def _trailing_line_breaks(t: str) -> int:
    return len(_LINE_BREAK.findall(t, _bounds(t)[1]))


def _carriage_returns(t: str) -> int:
    return int("\r" in t)


def _not_nfc(t: str) -> int:
    return 0 if t.isascii() else int(not unicodedata.is_normalized("NFC", t))


def _format_characters(t: str) -> int:
    """Format characters (Cf) but the zero-width (non-)joiners and a leading byte-order mark."""
    if t.isascii() or not (cf := format_char_pattern()).search(t):
        return 0
    n = sum(1 for _ in cf.finditer(t)) - t.startswith("\ufeff")
    return n - sum(t.count(c) for c in _KEEP_CF)


def _byte_order_mark(t: str) -> int:
    return int(t.startswith(("\ufeff", "\u00ef\u00bb\u00bf")))


def _count(pattern: re.Pattern[str], ascii_free: bool = False) -> Callable[[str], int]:
    def level(t: str) -> int:
        if ascii_free and t.isascii():
            return 0
        return sum(1 for _ in pattern.finditer(t))
    return level


def _mojibake(t: str) -> int:
    if t.isascii() or ("\u00e2" not in t and "\u00c3" not in t and "\u00c2" not in t):
        return 0
    return sum(1 for _ in _MOJIBAKE.finditer(t))


def _html_entities(t: str) -> int:
    if "&" not in t:
        return 0
    return sum(1 for m in _ENTITY.finditer(t) if m.group(1)[0] == "#" or m.group(1) + ";" in html.entities.html5)


def _literal_escapes(t: str) -> int:
    """Literal ``\\n``/``\\t``/``\\uXXXX`` escapes in a text without a real line break (JSON-encoded twice)."""
    if "\\" not in t or _LINE_BREAK.search(t):
        return 0
    return sum(1 for _ in _ESCAPE.finditer(t))


def _special_tokens(t: str) -> int:
    """Chat-template and tokenizer special tokens; ``<s>``/``</s>`` only at the start/end (elsewhere
    they are HTML strike-through tags)."""
    if "<" not in t and "[" not in t:
        return 0
    i, j = _bounds(t)
    n = sum(1 for _ in _PIPE_TOKEN.finditer(t)) + sum(t.count(tok) for tok in _TOKENS)
    return n + t.startswith("<s>", i) + t.endswith("</s>", i, j)


def _double_spaces(t: str) -> int:
    """Runs of two or more spaces between two non-space characters (not indentation, not the two
    trailing spaces of a Markdown line break)."""
    if "  " not in t:
        return 0
    return sum(1 for m in _SPACES.finditer(t)
               if m.start() and not t[m.start() - 1].isspace() and m.end() < len(t) and not t[m.end()].isspace())


def _role_prefix(t: str) -> int:
    return int(bool(_ROLE_PREFIX.match(t)))


def _wrapped_in_quotes(t: str) -> int:
    """The whole text in one pair of quotes (``"..."``, ``'...'``, curly quotes, or ``['...']`` as a
    list of one string), with no other quote of that kind inside except CSV-doubled ones."""
    i, j = _bounds(t)
    if j - i < 2:
        return 0
    if t[i] == "[" and t[j - 1] == "]" and j - i >= 4:
        i, j = i + 1, j - 1
    pairs = {'"': '"', "'": "'", "\u201c": "\u201d"}
    close = pairs.get(t[i])
    if close is None or t[j - 1] != close or j - i < 2:
        return 0
    inner = t[i + 1:j - 1]
    return int(t[i] not in inner.replace(t[i] * 2, "") and close not in inner.replace(close * 2, ""))


@dataclass(frozen=True)
class FormatMark:
    """One mark: its name (a leakage signal name), what it is, and its level in a text (>= 0)."""

    name: str
    help: str
    level: Callable[[str], int]


FORMAT_MARKS: tuple[FormatMark, ...] = (
    FormatMark("role_prefix", "a response starts with a speaker prefix ('Assistant:', 'AI:', '### Response')",
               _role_prefix),
    FormatMark("special_tokens", "chat-template special tokens ('<|im_end|>', '</s>' at the end, '[INST]')",
               _special_tokens),
    FormatMark("byte_order_mark", "a response starts with a byte-order mark (U+FEFF, or its mojibake)",
               _byte_order_mark),
    FormatMark("format_characters", "invisible Unicode format characters (Cf: zero-width space, soft hyphen, "
               "bidi controls; not the emoji/script joiners)", _format_characters),
    FormatMark("not_nfc", "a response not in Unicode NFC (decomposed accents)", _not_nfc),
    FormatMark("carriage_returns", "CRLF or CR line breaks", _carriage_returns),
    FormatMark("leading_whitespace", "whitespace characters before the text", _leading_whitespace),
    FormatMark("trailing_whitespace", "whitespace characters after the text", _trailing_whitespace),
    FormatMark("trailing_line_breaks", "line breaks after the text", _trailing_line_breaks),
    FormatMark("nonstandard_spaces", "no-break and other non-ASCII spaces (U+00A0, U+2000-U+200A, ...)",
               _count(_ODD_SPACES, ascii_free=True)),
    FormatMark("double_spaces", "runs of two or more spaces between words (invisible once rendered)",
               _double_spaces),
    FormatMark("html_entities", "HTML character references ('&amp;', '&#39;')", _html_entities),
    FormatMark("literal_escapes", "literal '\\n' escapes instead of line breaks (JSON-encoded twice)",
               _literal_escapes),
    FormatMark("mojibake", "UTF-8 decoded as cp1252/latin-1 ('â€™', 'Ã©')", _mojibake),
    FormatMark("replacement_characters", "U+FFFD (text repaired on reading)",
               lambda t: 0 if t.isascii() else t.count("\ufffd")),
    FormatMark("wrapped_in_quotes", "the whole response in quotes (a CSV/repr round trip)", _wrapped_in_quotes),
)
MARK_NAMES: tuple[str, ...] = tuple(m.name for m in FORMAT_MARKS)
MARK_HELP: dict[str, str] = {m.name: m.help for m in FORMAT_MARKS}


@functools.lru_cache(maxsize=1 << 16)
def mark_levels(text: str) -> tuple[int, ...]:
    """The level of every mark of :data:`FORMAT_MARKS` in ``text``, in that order (cached)."""
    return tuple(m.level(text) for m in FORMAT_MARKS)


def mark_signals(a: str, b: str) -> dict[str, int]:
    """Mark name -> +1 when ``a`` carries more of the mark than ``b``, -1 when less, 0 when equal."""
    return {name: (x > y) - (x < y) for name, x, y in zip(MARK_NAMES, mark_levels(a), mark_levels(b), strict=True)}


@dataclass(frozen=True)
class OneSidedMark:
    """A mark that separates chosen from rejected in one dataset: ``differ`` pairs where it differs,
    ``on_chosen`` of them with the chosen response marked, out of ``pairs`` pairs."""

    dataset: str
    mark: str
    pairs: int
    differ: int
    on_chosen: int

    @property
    def side(self) -> str:
        return "chosen" if 2 * self.on_chosen >= self.differ else "rejected"

    @property
    def same_side(self) -> int:
        return max(self.on_chosen, self.differ - self.on_chosen)

    def message(self) -> str:
        return (f"dataset {self.dataset!r}: format mark {self.mark!r} ({MARK_HELP[self.mark]}) differs between chosen "
                f"and rejected in {self.differ} of {self.pairs} pairs ({100 * self.differ / self.pairs:.1f}%), on "
                f"the {self.side} side in {self.same_side} of them ({100 * self.same_side / self.differ:.1f}%): a "
                "one-line check reads those labels. Normalize it away in the source if it is a processing trace "
                "(`prb data audit` shows what it gives away)")


def one_sided_marks(pairs: Iterable[tuple[str, str, str]], *, min_pairs: int = ONE_SIDED_MIN_PAIRS,
                    share: float = ONE_SIDED_SHARE) -> tuple[list[OneSidedMark], dict[str, int]]:
    """Marks that separate chosen from rejected, from (dataset, chosen, rejected) triples.

    Returns the marks with at least ``min_pairs`` differing pairs in a dataset of which at least
    ``share`` have the mark on the same side (defaults and their false-alarm rate: module
    constants), and, per dataset, how many pairs have at least one of those marks differing.
    """
    total: dict[str, int] = {}
    differ: dict[tuple[str, str], int] = {}
    on_chosen: dict[tuple[str, str], int] = {}
    signs: list[tuple[str, dict[str, int]]] = []
    for ds, chosen, rejected in pairs:
        total[ds] = total.get(ds, 0) + 1
        sig = {k: v for k, v in mark_signals(chosen, rejected).items() if v}
        for k, v in sig.items():
            differ[ds, k] = differ.get((ds, k), 0) + 1
            on_chosen[ds, k] = on_chosen.get((ds, k), 0) + (v > 0)
        if sig:
            signs.append((ds, sig))
    found = [OneSidedMark(ds, k, total[ds], n, on_chosen[ds, k]) for (ds, k), n in sorted(differ.items())
             if n >= min_pairs and max(on_chosen[ds, k], n - on_chosen[ds, k]) >= share * n]
    flagged = {(f.dataset, f.mark) for f in found}
    affected: dict[str, int] = {}
    for ds, sig in signs:
        if any((ds, k) in flagged for k in sig):
            affected[ds] = affected.get(ds, 0) + 1
    return found, affected
