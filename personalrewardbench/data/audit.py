"""``prb data audit``: how much of a benchmark's test labels its structure gives away.

For every user, the label-free signals of :mod:`personalrewardbench.data.leakage` are computed
for the user's test pairs taken together (as a method that receives all of a user's test
queries at once sees them), with the user's train/val pairs as history; the directions of the
label-free signals are learned from the train/val pairs of all users. A test pair is *affected*
when any signal speaks, and the first signal that speaks decides it.

Figures, per dataset and per user (fractions in [0, 1]):

- ``affected_share``: affected test pairs / test pairs; per signal, the pairs and share it speaks
  on (for a format mark: the pairs where the two responses differ in it) and ``on_chosen``, how
  many of those point at the chosen response.
- ``format_marks``: the same figures from the format signals alone (a serialized response and the
  marks of :mod:`personalrewardbench.data.marks`): ``differ_pairs``/``differ_share``, test pairs
  where any of them differs between the two responses; ``affected_pairs``, those it decides (its
  direction learned with evidence); and its structure-only accuracy with interval.
- ``decided_accuracy``: decided pairs whose decision is the user's choice / decided pairs, with
  a 95% Clopper-Pearson interval over pairs (the beta quantiles, via ``scipy.stats.beta``: the
  same interval as ``scipy.stats.binomtest(k, n).proportion_ci(method="exact")``).
- ``structure_only_accuracy``: the expected accuracy of a predictor that follows the structure
  where it decides and flips a fair coin elsewhere: (correct + (n - decided) / 2) / n. Its 95%
  interval maps the decided-accuracy interval through the same formula (the decided set is fixed
  by the label-free structure; only the labels on it vary). Chance is 0.5.

``directions`` (+1: the marked / repeated side is chosen, -1: rejected, 0: silent) and
``direction_evidence`` (train/val pairs where the signal's side was chosen / rejected) say what
was learned (:func:`~personalrewardbench.data.leakage.directions_from_votes`).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from personalrewardbench.data.leakage import (
    FORMAT_SIGNALS,
    SIGNAL_HELP,
    SIGNALS,
    Item,
    UserStructure,
    decide,
    direction_votes,
    directions_from_votes,
)
from personalrewardbench.data.schema import Benchmark, PreferencePair

CI_METHOD = ("95% Clopper-Pearson interval over decided test pairs (beta quantiles via scipy.stats.beta, "
             "= scipy.stats.binomtest(k, n).proportion_ci(method='exact')); structure-only accuracy's interval "
             "is that interval mapped through (correct + undecided/2) / n")


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> list[float] | None:
    """Exact (Clopper-Pearson) interval of a binomial proportion k/n; None when n == 0.

    The bounds are the beta quantiles of Clopper and Pearson (1934), ``beta.ppf(a/2, k, n-k+1)``
    and ``beta.isf(a/2, k+1, n-k)`` (0 and 1 at the edges): the interval
    ``scipy.stats.binomtest(k, n).proportion_ci(method="exact")`` returns, without its root search.
    """
    if n == 0:
        return None
    from scipy.stats import beta

    a = 1 - confidence
    low = 0.0 if k == 0 else float(beta.ppf(a / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.isf(a / 2, k + 1, n - k))
    return [low, high]


def _accuracy(n: int, decided: int, correct: int) -> dict[str, Any]:
    """Decided accuracy and structure-only accuracy (module doc) of ``n`` pairs, with intervals."""
    ci = clopper_pearson(correct, decided)
    undecided = n - decided

    def overall(acc: float) -> float:
        return (acc * decided + undecided / 2) / n

    return {
        "decided_correct": correct,
        "decided_accuracy": correct / decided if decided else None,
        "decided_accuracy_ci95": ci,
        "structure_only_accuracy": overall(correct / decided) if decided else (0.5 if n else None),
        "structure_only_accuracy_ci95": ([overall(ci[0]), overall(ci[1])] if ci else ([0.5, 0.5] if n else None)),
    }


Outcome = tuple[int, int, dict[str, int]]  # (decision * label, format-mark-only decision * label, signals)


def _block(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Figures of a set of test pairs, each as (decision * label: +1 right / -1 wrong / 0 none, the same
    from the format marks alone, signals with ``a`` = the chosen response)."""
    n = len(outcomes)
    decided = sum(1 for d, _, _ in outcomes if d)
    marks_differ = sum(1 for _, _, sig in outcomes if any(sig[s] for s in FORMAT_SIGNALS))
    return {
        "test_pairs": n,
        "affected_pairs": decided,
        "affected_share": decided / n if n else None,
        "signals": {s: {"pairs": (k := sum(1 for _, _, sig in outcomes if sig[s])), "share": k / n if n else None,
                        "on_chosen": sum(1 for _, _, sig in outcomes if sig[s] > 0)} for s in SIGNALS},
        **_accuracy(n, decided, sum(1 for d, _, _ in outcomes if d > 0)),
        "format_marks": {
            "differ_pairs": marks_differ,
            "differ_share": marks_differ / n if n else None,
            "affected_pairs": (fd := sum(1 for _, f, _ in outcomes if f)),
            "affected_share": fd / n if n else None,
            **_accuracy(n, fd, sum(1 for _, f, _ in outcomes if f > 0)),
        },
    }


def _history(pairs: Sequence[PreferencePair]) -> UserStructure:
    return UserStructure((p.context, p.chosen, p.rejected) for p in pairs if p.split in ("train", "val"))


def audit_benchmark(bench: Benchmark) -> dict[str, Any]:
    """The audit report (module doc) as a JSON-ready dict: ``datasets`` and ``users`` blocks."""
    by_user: dict[str, list[PreferencePair]] = defaultdict(list)
    for p in bench.pairs:
        by_user[p.user_id].append(p)
    structures = {u: _history(ps) for u, ps in by_user.items()}
    learn = []
    for u, ps in sorted(by_user.items()):
        for split in ("train", "val"):
            group = [p for p in ps if p.split == split]
            if group:
                learn.append((structures[u], [Item(p.context, p.chosen, p.rejected) for p in group], [1] * len(group)))
    votes = direction_votes(learn)
    directions = directions_from_votes(votes)
    users: dict[str, dict[str, Any]] = {}
    per_dataset: dict[str, list[Outcome]] = defaultdict(list)
    users_of: dict[str, set[str]] = defaultdict(set)
    for u, ps in sorted(by_user.items()):
        test = [p for p in ps if p.split == "test"]
        if not test:
            continue
        items = [Item(p.context, p.chosen, p.rejected) for p in test]  # a = chosen: decision +1 is right
        outcomes = [(decide(sig, directions)[0], decide(sig, directions, FORMAT_SIGNALS)[0], sig)
                    for sig in structures[u].signals(items)]
        users[u] = {"dataset": test[0].dataset, **_block(outcomes)}
        per_dataset[test[0].dataset].extend(outcomes)
        users_of[test[0].dataset].add(u)
    return {
        "dataset": bench.name,
        "content_hash": bench.content_hash,
        "official": bench.manifest.official,
        "construction": dict(bench.manifest.filters),
        "queries_seen_together": "all test pairs of a user",
        "signals": dict(SIGNAL_HELP),
        "directions": directions,
        "direction_evidence": {k: {"marked_side_chosen": a, "marked_side_rejected": b} for k, (a, b) in votes.items()},
        "ci_method": CI_METHOD,
        "datasets": {d: {"users": len(users_of[d]), **_block(o)} for d, o in sorted(per_dataset.items())},
        "users": users,
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _ci(ci: Sequence[float] | None) -> str:
    return "-" if not ci else f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


_SHORT = {"repeats_history_pair": "rep.hist", "response_judged_in_history": "judged", "response_in_context": "in.ctx",
          "response_repeated_in_split": "rep.test"}


def format_table(report: Mapping[str, Any], *, per_user: bool = False) -> str:
    """The audit as a plain-text table (percentages): one row per dataset (and user), then the format
    marks that differ in any test pair or were seen in train/val."""
    head = (f"{'dataset / user':<32} {'test':>6} {'affect%':>8} " + " ".join(f"{v:>8}" for v in _SHORT.values())
            + f" {'marks':>8} {'struct.acc%':>11} {'95% CI':>14}")
    lines = [f"{report['dataset']}: structure-only accuracy (chance = 50%) and share of test pairs affected; "
             "marks = a format mark differs between the two responses",
             head, "-" * len(head)]

    def row(label: str, b: Mapping[str, Any]) -> str:
        return (f"{label[:32]:<32} {b['test_pairs']:>6} {_pct(b['affected_share']):>8} "
                + " ".join(f"{_pct(b['signals'][s]['share']):>8}" for s in _SHORT)
                + f" {_pct(b['format_marks']['differ_share']):>8}"
                + f" {_pct(b['structure_only_accuracy']):>11} {_ci(b['structure_only_accuracy_ci95']):>14}")

    for d, b in report["datasets"].items():
        lines.append(row(f"{d} ({b['users']} users)", b))
    users = report["users"]
    if per_user:
        lines += [row(f"  {u}", b) for u, b in users.items()]
    leaky = sum(1 for b in users.values() if b["affected_pairs"])
    lines.append(f"users with any affected test pair: {leaky} of {len(users)}")
    evidence = report["direction_evidence"]
    for d, b in report["datasets"].items():
        f = b["format_marks"]
        lines.append(f"{d}: format marks alone decide {f['affected_pairs']} of {b['test_pairs']} test pairs "
                     f"(differ in {f['differ_pairs']}): structure-only accuracy {_pct(f['structure_only_accuracy'])}% "
                     f"{_ci(f['structure_only_accuracy_ci95'])}")
        shown = [s for s in FORMAT_SIGNALS if b["signals"][s]["pairs"] or sum(evidence[s].values())]
        if shown:
            lines.append(f"  {'format mark':<24} {'differ':>6} {'%test':>6} {'on chosen':>9} {'train/val chosen:rejected':>26} "
                         f"{'direction':>9}")
        for s in shown:
            sig, ev = b["signals"][s], evidence[s]
            votes = f"{ev['marked_side_chosen']}:{ev['marked_side_rejected']}"
            way = {1: "chosen", -1: "rejected", 0: "silent"}[report["directions"][s]]
            lines.append(f"  {s:<24} {sig['pairs']:>6} {_pct(sig['share']):>6} {sig['on_chosen']:>9} {votes:>26} {way:>9}")
    lines.append("directions learned from train/val (+1: the marked/repeated side is chosen, 0: silent): "
                 + ", ".join(f"{k}={v}" for k, v in report["directions"].items() if v or k in _SHORT))
    return "\n".join(lines)


def write_report(report: Mapping[str, Any], out: str | os.PathLike[str]) -> Path:
    """Write the report as indented JSON (atomically: a temporary file renamed into place)."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
