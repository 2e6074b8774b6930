"""Format marks: surface features that give a label away without being content.

Every data set here is built so the expected figures follow by hand: per user 4 train, 2 val and
6 test pairs (4 users: 24 train/val pairs, 24 test pairs, 48 pairs in all), random unique texts
made of single-spaced ASCII words ending in "." (no mark of any kind), then one mark put on one
side.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import pytest

from personalrewardbench.cli import main
from personalrewardbench.data import load_benchmark
from personalrewardbench.data.audit import audit_benchmark
from personalrewardbench.data.marks import MARK_NAMES, mark_levels, one_sided_marks
from personalrewardbench.methods import MethodEnv, load_method
from personalrewardbench.query_keys import make_queries
from tests.data.helpers import write_jsonl

WORDS = "apple river stone light quick slow green paper window music garden candle".split()


def rows_with(mark: Callable[[str, str, int], tuple[str, str]], users: int = 4) -> list[dict[str, Any]]:
    """Published-schema rows; ``mark(chosen, rejected, k)`` edits pair k (0-11) of each user."""
    rng, seen = random.Random(5), set()

    def text() -> str:
        while True:
            t = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 12))).capitalize() + "."
            if t not in seen:
                seen.add(t)
                return t

    rows = []
    for u in range(users):
        for k in range(12):
            c, r = mark(text(), text(), k)
            rows.append({"user_id": f"u{u}", "conversation_id": f"c{u}-{k}",
                         "context": [{"role": "user", "content": text()}],
                         "chosen": {"role": "model", "content": c}, "rejected": {"role": "model", "content": r},
                         "split": "train" if k < 4 else "val" if k < 6 else "test",
                         "flip": bool(k % 2), "turns": 1, "type": "unguided"})
    return rows


# mark name -> (a marked version of a text, an unmarked one may stay as is)
MARKS: dict[str, tuple[Callable[[str], str], Callable[[str], str]]] = {
    "role_prefix": (lambda t: "AI: " + t, lambda t: t),
    "special_tokens": (lambda t: t + "<|im_end|>", lambda t: t),
    "byte_order_mark": (lambda t: "\ufeff" + t, lambda t: t),
    "format_characters": (lambda t: t.replace(" ", " \u2060", 1), lambda t: t),  # word joiner
    "not_nfc": (lambda t: "Cafe\u0301 " + t, lambda t: "Caf\u00e9 " + t),
    "carriage_returns": (lambda t: t.replace(" ", "\r\n", 1), lambda t: t.replace(" ", "\n", 1)),
    "leading_whitespace": (lambda t: "\n" + t, lambda t: t),
    "trailing_line_breaks": (lambda t: t + "\n\n", lambda t: t + "\n"),  # trailing newline counts
    "nonstandard_spaces": (lambda t: t.replace(" ", "\u00a0", 1), lambda t: t),
    "html_entities": (lambda t: t[:-1] + " &amp; more.", lambda t: t[:-1] + " & more."),
    "literal_escapes": (lambda t: t.replace(" ", "\\n", 1), lambda t: t),
    "mojibake": (lambda t: t[:-1] + " it\u00e2\u20ac\u2122s.", lambda t: t[:-1] + " it\u2019s."),
    "replacement_characters": (lambda t: t[:-1] + " caf\ufffd.", lambda t: t[:-1] + " caf\u00e9."),
    "wrapped_in_quotes": (lambda t: f'"{t}"', lambda t: t),
    "double_spaces": (lambda t: t.replace(" ", "  ", 1), lambda t: t),
}


def _probe(bench) -> tuple[list[float], list, dict]:
    probe = load_method("leak-probe")
    probe.setup(MethodEnv(seed=0, show_progress=False))
    probe.fit(bench.histories())
    queries, keys = make_queries(bench.pairs_of("test"), 0)
    return probe.predict(queries), [keys[q.query_id].chosen_first for q in queries], probe.usage()


@pytest.mark.parametrize("side", ["chosen", "rejected"])
@pytest.mark.parametrize("name", list(MARKS))
def test_one_sided_mark_is_warned_audited_and_read_by_leak_probe(tmp_path, name, side):
    """The mark on every chosen (or every rejected) response. By hand: it differs in all 48 pairs, on
    one side in all 48: validation warns with 48 affected pairs; its direction is learned from the 24
    train/val pairs (24:0, sign test p = 2^-23); all 24 test pairs are decided by it, all correctly
    (structure-only accuracy 1.0, interval [(0.025)^(1/24), 1]); leak-probe answers all 48 queries."""
    marked, plain = MARKS[name]

    def edit(c: str, r: str, k: int) -> tuple[str, str]:
        return (marked(c), plain(r)) if side == "chosen" else (plain(c), marked(r))

    bench = load_benchmark(write_jsonl(tmp_path / "pairs.jsonl", rows_with(edit)))
    assert bench.manifest.warnings["format_mark_one_sided"] == 48
    (where,) = [w for w in bench.manifest.warning_locations["format_mark_one_sided"] if f"'{name}'" in w]
    assert f"in 48 of 48 pairs (100.0%), on the {side} side in 48 of them (100.0%)" in where

    report = audit_benchmark(bench)
    b = report["datasets"]["pairs"]
    assert report["directions"][name] == (1 if side == "chosen" else -1)
    assert report["direction_evidence"][name] == ({"marked_side_chosen": 24, "marked_side_rejected": 0}
                                                  if side == "chosen" else
                                                  {"marked_side_chosen": 0, "marked_side_rejected": 24})
    assert b["signals"][name]["pairs"] == 24 and b["signals"][name]["on_chosen"] == (24 if side == "chosen" else 0)
    assert b["affected_pairs"] == 24 and b["structure_only_accuracy"] == 1.0
    f = b["format_marks"]
    assert f["differ_pairs"] == 24 and f["affected_pairs"] == 24 and f["decided_correct"] == 24
    assert f["structure_only_accuracy_ci95"] == pytest.approx([0.025 ** (1 / 24), 1.0])

    probs, chosen_first, usage = _probe(bench)
    assert all((p > 0.5) == c for p, c in zip(probs, chosen_first, strict=True))
    assert usage["queries_decided_by_structure"] == 48


def test_mark_on_alternating_sides_is_not_a_leak(tmp_path):
    """Trailing space on chosen for even k, on rejected for odd k: per user train/val k=0..5 give 3:3
    (12:12 in all: silent), test k=6..11 differ in 6 pairs, 3 on chosen. 24 of 48 pairs on the chosen
    side = 50% < 90%: no warning; nothing decided: structure-only accuracy 0.5."""
    def edit(c: str, r: str, k: int) -> tuple[str, str]:
        return (c + " ", r) if k % 2 == 0 else (c, r + " ")

    bench = load_benchmark(write_jsonl(tmp_path / "pairs.jsonl", rows_with(edit)))
    assert "format_mark_one_sided" not in bench.manifest.warnings
    report = audit_benchmark(bench)
    b = report["datasets"]["pairs"]
    assert report["direction_evidence"]["trailing_whitespace"] == {"marked_side_chosen": 12,
                                                                   "marked_side_rejected": 12}
    assert report["directions"]["trailing_whitespace"] == 0
    assert b["signals"]["trailing_whitespace"] == {"pairs": 24, "share": 1.0, "on_chosen": 12}
    assert b["format_marks"]["differ_pairs"] == 24 and b["affected_pairs"] == 0
    assert b["structure_only_accuracy"] == 0.5


def test_markdown_is_content_not_a_mark(tmp_path):
    """Markdown on every chosen response (bold, a list, a heading, a code span, emoji with joiners,
    indentation): a user may prefer it, so no mark differs, nothing is warned or decided."""
    def edit(c: str, r: str, k: int) -> tuple[str, str]:
        return (f"## Answer\n\n**{c}**\n\n- one\n- `two`\n    indented\n\U0001F468\u200d\U0001F469\u200d\U0001F467", r)

    bench = load_benchmark(write_jsonl(tmp_path / "pairs.jsonl", rows_with(edit)))
    assert "format_mark_one_sided" not in bench.manifest.warnings
    b = audit_benchmark(bench)["datasets"]["pairs"]
    assert b["format_marks"]["differ_pairs"] == 0 and b["structure_only_accuracy"] == 0.5


def test_one_sided_threshold_by_hand():
    """At least 20 differing pairs with at least 90% on one side (marks.ONE_SIDED_*)."""
    def triples(on_chosen: int, on_rejected: int, plain: int = 5) -> list[tuple[str, str, str]]:
        return ([("d", "x ", "y")] * on_chosen + [("d", "x", "y ")] * on_rejected + [("d", "x", "y")] * plain)

    found, affected = one_sided_marks(triples(18, 2))  # 18/20 = 90%: flagged
    assert [(m.mark, m.pairs, m.differ, m.on_chosen, m.side) for m in found] == [("trailing_whitespace", 25, 20, 18,
                                                                                  "chosen")]
    assert affected == {"d": 20}
    assert one_sided_marks(triples(17, 3))[0] == []  # 85%
    assert one_sided_marks(triples(19, 0))[0] == []  # 19 pairs: too few to tell
    found, _ = one_sided_marks(triples(1, 19))
    assert [(m.side, m.same_side) for m in found] == [("rejected", 19)]


@pytest.mark.parametrize("text,expected", [
    ("Assistant: Sure.", {"role_prefix": 1}),
    ("**Assistant:** Sure.", {"role_prefix": 1}),
    ("[Bot]: hi", {"role_prefix": 1}),
    ("GPT-3.5-turbo: Sure.", {"role_prefix": 1}),
    ("AI safety: a field.", {}),
    ("### Response:\nSure.", {"role_prefix": 1, "literal_escapes": 0}),
    ("Answer: 42", {}),
    ("## Answer\n\nSure.", {}),  # a Markdown heading
    ("Model 3 is a car.", {}),
    ("Done.<|im_end|>", {"special_tokens": 1}),
    ("Done. </s>", {"special_tokens": 1}),
    ("Use <s>strike</s> here.", {}),
    ("[INST] hi [/INST]", {"special_tokens": 2}),
    ("a\u200bb\u00adc", {"format_characters": 2}),
    ("\ufeffHello", {"byte_order_mark": 1}),
    ("\u00ef\u00bb\u00bfHello", {"byte_order_mark": 1}),
    ("x \n\n", {"trailing_whitespace": 3, "trailing_line_breaks": 2}),
    ("x\r\n", {"carriage_returns": 1, "trailing_whitespace": 2, "trailing_line_breaks": 1}),
    ("  x", {"leading_whitespace": 2}),
    ("a  b  c", {"double_spaces": 2}),
    ("line one  \nline two", {}),  # a Markdown line break
    ("AT&T; R&D &amp; &#39;x&#x27;", {"html_entities": 3}),
    ('say \\"hi\\" then \\u00e9', {"literal_escapes": 1}),
    ("'single'", {"wrapped_in_quotes": 1}),
    ('"He said "hi" to me"', {}),
    ("\u201cquoted\u201d", {"wrapped_in_quotes": 1}),
    ("Tr\u00e8s bien \u3000 ok", {}),  # NFC, the CJK space is content
])
def test_mark_levels_by_hand(text, expected):
    got = {k: v for k, v in zip(MARK_NAMES, mark_levels(text), strict=True) if v}
    assert got == {k: v for k, v in expected.items() if v}


def test_audit_cli_prints_the_mark_rows(tmp_path, capsys):
    rows = rows_with(lambda c, r, k: (c + "\n", r))
    out = tmp_path / "a.json"
    assert main(["data", "audit", "--dataset", str(write_jsonl(tmp_path / "pairs.jsonl", rows)), "--out",
                 str(out)]) == 0
    text = capsys.readouterr().out
    assert "format marks alone decide 24 of 24 test pairs (differ in 24)" in text
    assert "trailing_whitespace" in text and "24:0" in text
    assert json.loads(out.read_text())["directions"]["trailing_line_breaks"] == 1
    # validation: a warning by default (the rows load), refused under --strict
    data = str(tmp_path / "pairs.jsonl")
    assert main(["data", "validate", "--dataset", data]) == 0
    assert "format_mark_one_sided=48" in capsys.readouterr().out
    assert main(["data", "validate", "--dataset", data, "--strict"]) == 2
    assert "format_mark_one_sided=48" in capsys.readouterr().err
