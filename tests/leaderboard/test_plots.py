"""Legible figures: with many rows and long names no label overlaps another, none is cut at the figure's
edge, and legends sit outside the data."""

from __future__ import annotations

import itertools

import pytest

from personalrewardbench.leaderboard.collect import RunResult
from personalrewardbench.leaderboard.plots import FIGURES, draw_figure, figure_kinds
from personalrewardbench.leaderboard.table import Group, Row, rank_group


def _run(i: int) -> RunResult:
    acc = 0.45 + 0.02 * i
    per_user = {f"u{k}": {"accuracy": min(1.0, acc + 0.05 * (k % 3 - 1)), "n_train": 3 + k} for k in range(12)}
    return RunResult(
        dataset="chatbot_arena", method=f"synthesizeme-just-personas-variant-{i}" if i % 2 else f"m{i}",
        tier=("reproduced", "submitted", "local")[i % 3],
        base_model="openai:meta-llama/Llama-3.3-70B-Instruct-with-a-very-long-revision-name@abcdef" if i % 2 else None,
        status="ok", scores={"accuracy": acc, "accuracy_ci95": [acc - 0.04, acc + 0.04]},
        cost={"seconds_per_1000_judgments": 0.01 * 3 ** i, "tokens_per_1000_judgments": 1000 * i},
        per_user=per_user, config={"i": i}, content_hash="c" * 64, users=tuple(per_user), benchmark_users=12,
    )


@pytest.fixture(scope="module")
def group() -> Group:
    g = Group("chatbot_arena", "c" * 64, tuple(f"u{k}" for k in range(12)), 12)
    g.rows = [Row(_run(i)) for i in range(14)]
    g.rows = rank_group(g.rows)  # no predictions: the paired test is skipped, ranks and order still apply
    return g


def _overlap(a, b) -> bool:  # noqa: ANN001 - matplotlib Bbox
    return a.x0 < b.x1 - 0.5 and b.x0 < a.x1 - 0.5 and a.y0 < b.y1 - 0.5 and b.y0 < a.y1 - 0.5


@pytest.mark.parametrize("kind", FIGURES)
def test_labels_neither_overlap_nor_are_cut(group: Group, kind: str) -> None:
    assert kind in figure_kinds(group)
    fig = draw_figure(group, kind)
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    drawn = fig.get_tightbbox(renderer)  # inches, over everything actually drawn
    assert drawn.x0 >= -0.01 and drawn.y0 >= -0.01, drawn
    assert drawn.x1 <= fig.get_figwidth() + 0.01 and drawn.y1 <= fig.get_figheight() + 0.01, drawn
    for axis, (lo, hi) in ((ax.xaxis, sorted(ax.get_xlim())), (ax.yaxis, sorted(ax.get_ylim()))):
        boxes = [t.label1.get_window_extent(renderer) for t in axis.get_major_ticks()
                 if t.label1.get_visible() and t.label1.get_text() and lo <= t.get_loc() <= hi]
        assert boxes
        for a, b in itertools.combinations(boxes, 2):
            assert not _overlap(a, b)
    title = ax.title.get_window_extent(renderer)
    assert not _overlap(title, ax.get_window_extent(renderer))
    legend = ax.get_legend()
    if legend is not None:
        assert not _overlap(legend.get_window_extent(renderer), ax.get_window_extent(renderer))
        entries = [t.get_window_extent(renderer) for t in legend.get_texts()]
        assert len(entries) == 14
        for a, b in itertools.combinations(entries, 2):
            assert not _overlap(a, b)
