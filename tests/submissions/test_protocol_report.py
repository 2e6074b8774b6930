"""The pipe protocol survives any bytes; the Markdown report keeps adapter text inert."""

from __future__ import annotations

import os

import pytest

from personalrewardbench.submissions.protocol import Channel, ChannelClosed, ChannelError, decode_message
from personalrewardbench.submissions.report import markdown_summary, md_block, md_cell
from personalrewardbench.submissions.scoring import ScoreOutcome

BAD = {
    "deep array": b"[" * 100_000 + b"]" * 100_000,
    "deep object": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "65 levels": b'{"a":' + b"[" * 64 + b"]" * 64 + b"}",
    "400-digit integer": b'{"result": [' + b"9" * 400 + b"]}",
    "negative huge integer": b'{"x": -' + b"1" * 41 + b"}",
    "not JSON": b"hello",
    "not an object": b"[1, 2]",
    "invalid UTF-8": b'{"x": "\xff\xfe"}',
    "truncated": b'{"id": 1, "ok": tr',
    "empty": b"",
}


@pytest.mark.parametrize("raw", BAD.values(), ids=BAD.keys())
def test_any_bad_bytes_are_a_channel_error(raw):
    with pytest.raises(ChannelError):
        decode_message(raw)


def test_accepted_messages():
    assert decode_message(b'{"id": 3, "result": [0.5, null, 1e400, ' + b"7" * 40 + b"]}")["result"][2] == float("inf")
    assert decode_message(b'{"a":' * 63 + b"1" + b"}" * 63)  # 63 levels: fine


def _pipe_channel(max_bytes: int | None) -> tuple[Channel, int]:
    r, w = os.pipe()
    return Channel(r, os.open(os.devnull, os.O_WRONLY), max_bytes=max_bytes), w


def test_a_message_over_the_cap_fails_before_it_is_buffered_whole():
    chan, w = _pipe_channel(max_bytes=1000)
    os.write(w, b"x" * 5000)  # no newline yet
    with pytest.raises(ChannelError, match="longer than the limit of 1000 bytes"):
        chan.recv(deadline=None)
    os.close(w)


def test_a_closed_pipe_is_channel_closed():
    chan, w = _pipe_channel(max_bytes=None)
    os.write(w, b'{"a": 1}\n{"b"')
    os.close(w)
    assert chan.recv() == {"a": 1}
    with pytest.raises(ChannelClosed):
        chan.recv()


def test_md_cell_neutralizes_markdown_and_html():
    cell = md_cell("x | y\n## h `code` <script>alert(1)</script> [l](http://e) @user **b**")
    assert "|" not in cell and "\n" not in cell and "<script>" not in cell and "`" not in cell
    assert "[" not in cell and "@" not in cell and "*" not in cell


def test_md_block_fence_is_longer_than_any_run_inside():
    lines = md_block("a\n````\n| row |\n```````\nz")
    assert lines[0] == "`" * 8 + "text" and lines[-1] == "`" * 8


def test_report_renders_adapter_text_as_data():
    markdown_it = pytest.importorskip("markdown_it")
    evil = ScoreOutcome(method="x` | ok | 100% |\n| y", dataset="tiny", status="failed",
                        error="```\n## Passed\n| a | b |\n|---|---|\n| 1 | 2 |", kind="crash")
    html = markdown_it.MarkdownIt("commonmark").enable("table").render(markdown_summary([evil], title="t"))
    assert html.count("<h2>") == 1 and html.count("<tr>") == 2 and "<h2>Passed" not in html


def test_console_report_is_plain_readable_text(tmp_path):
    """The terminal report: no Markdown or HTML escapes, the adapter's text as written (parentheses,
    backticks) minus control characters and escape sequences, and where each run was written."""
    from pathlib import Path

    from personalrewardbench.submissions.report import console_summary

    ok = ScoreOutcome(method="mine", dataset="tiny", status="ok", run_dir=Path("out/tiny/mine/s0-abc"),
                      results={"scores": {"accuracy": 0.75, "accuracy_ci95": [0.5, 0.9], "n_users": 3,
                                          "n_judgments": 48}})
    bad = ScoreOutcome(method="mine-v", dataset="tiny", status="failed", kind="crash-exception",
                       error="the adapter raised ValueError: f(x) needs `x` > 0 (got -1);\x1b[31m red\x1b[0m\n"
                             '    File "/submission/adapter.py", line 3, in fit')
    text = console_summary([ok, bad], title="mine: sandboxed scores")
    assert "&#" not in text and "<code>" not in text and "**" not in text
    assert "f(x) needs `x` > 0 (got -1); red" in text and "\x1b" not in text and "[31m" not in text
    assert '      File "/submission/adapter.py", line 3, in fit' in text
    rows = text.splitlines()
    assert rows[2].split() == ["method", "dataset", "status", "accuracy", "[95%", "CI", "pairs]", "users", "judgments"]
    assert rows[3].split() == ["mine", "tiny", "ok", "75.0%", "[50.0%,", "90.0%]", "3", "48"]
    assert rows[4].split()[:3] == ["mine-v", "tiny", "FAILED"]
    assert "Results written to:\n  mine on tiny: out/tiny/mine/s0-abc" in text
