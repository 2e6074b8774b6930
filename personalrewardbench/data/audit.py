"""``prb data audit``: how much of a benchmark's test labels its structure gives away.

For every user, the label-free signals of :mod:`personalrewardbench.data.leakage` are computed
for the user's test pairs taken together (as a method that receives all of a user's test
queries at once sees them), with the user's train/val pairs as history; the directions of the
label-free signals are learned from the train/val pairs of all users. A test pair is *affected*
when any signal speaks, and the first signal that speaks decides it.

Figures, per dataset and per user (fractions in [0, 1]):

- ``affected_share``: affected test pairs / test pairs; per signal, the share it speaks on.
- ``decided_accuracy``: decided pairs whose decision is the user's choice / decided pairs, with
  a 95% Clopper-Pearson interval over pairs (the beta quantiles, via ``scipy.stats.beta``: the
  same interval as ``scipy.stats.binomtest(k, n).proportion_ci(method="exact")``).
- ``structure_only_accuracy``: the expected accuracy of a predictor that follows the structure
  where it decides and flips a fair coin elsewhere: (correct + (n - decided) / 2) / n. Its 95%
  interval maps the decided-accuracy interval through the same formula (the decided set is fixed
  by the label-free structure; only the labels on it vary). Chance is 0.5.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from personalrewardbench.data.leakage import SIGNAL_HELP, SIGNALS, Item, UserStructure, decide, learn_directions
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


def _block(outcomes: Sequence[tuple[int, dict[str, int]]]) -> dict[str, Any]:
    """Figures of a set of test pairs, each as (decision * label: +1 right / -1 wrong / 0 none, signals)."""
    n = len(outcomes)
    decided = sum(1 for d, _ in outcomes if d)
    correct = sum(1 for d, _ in outcomes if d > 0)
    per_signal = {s: sum(1 for _, sig in outcomes if sig[s]) for s in SIGNALS}
    ci = clopper_pearson(correct, decided)
    undecided = n - decided

    def overall(acc: float) -> float:
        return (acc * decided + undecided / 2) / n

    return {
        "test_pairs": n,
        "affected_pairs": decided,
        "affected_share": decided / n if n else None,
        "signals": {s: {"pairs": k, "share": k / n if n else None} for s, k in per_signal.items()},
        "decided_correct": correct,
        "decided_accuracy": correct / decided if decided else None,
        "decided_accuracy_ci95": ci,
        "structure_only_accuracy": overall(correct / decided) if decided else (0.5 if n else None),
        "structure_only_accuracy_ci95": ([overall(ci[0]), overall(ci[1])] if ci else ([0.5, 0.5] if n else None)),
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
    directions = learn_directions(learn)
    users: dict[str, dict[str, Any]] = {}
    per_dataset: dict[str, list[tuple[int, dict[str, int]]]] = defaultdict(list)
    users_of: dict[str, set[str]] = defaultdict(set)
    for u, ps in sorted(by_user.items()):
        test = [p for p in ps if p.split == "test"]
        if not test:
            continue
        items = [Item(p.context, p.chosen, p.rejected) for p in test]  # a = chosen: decision +1 is right
        outcomes = [(decide(sig, directions)[0], sig) for sig in structures[u].signals(items)]
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
        "ci_method": CI_METHOD,
        "datasets": {d: {"users": len(users_of[d]), **_block(o)} for d, o in sorted(per_dataset.items())},
        "users": users,
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _ci(ci: Sequence[float] | None) -> str:
    return "-" if not ci else f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def format_table(report: Mapping[str, Any], *, per_user: bool = False) -> str:
    """The audit as a plain-text table (percentages)."""
    short = {"repeats_history_pair": "rep.hist", "response_judged_in_history": "judged", "response_in_context":
             "in.ctx", "response_repeated_in_split": "rep.test", "response_serialized": "serial"}
    head = (f"{'dataset / user':<32} {'test':>6} {'affect%':>8} " + " ".join(f"{short[s]:>8}" for s in SIGNALS)
            + f" {'struct.acc%':>11} {'95% CI':>14}")
    lines = [f"{report['dataset']}: structure-only accuracy (chance = 50%) and share of test pairs affected",
             head, "-" * len(head)]

    def row(label: str, b: Mapping[str, Any]) -> str:
        return (f"{label[:32]:<32} {b['test_pairs']:>6} {_pct(b['affected_share']):>8} "
                + " ".join(f"{_pct(b['signals'][s]['share']):>8}" for s in SIGNALS)
                + f" {_pct(b['structure_only_accuracy']):>11} {_ci(b['structure_only_accuracy_ci95']):>14}")

    for d, b in report["datasets"].items():
        lines.append(row(f"{d} ({b['users']} users)", b))
    users = report["users"]
    if per_user:
        lines += [row(f"  {u}", b) for u, b in users.items()]
    leaky = sum(1 for b in users.values() if b["affected_pairs"])
    lines.append(f"users with any affected test pair: {leaky} of {len(users)}; signal directions learned from "
                 f"train/val: {report['directions']}")
    return "\n".join(lines)


def write_report(report: Mapping[str, Any], out: str | os.PathLike[str]) -> Path:
    """Write the report as indented JSON (atomically: a temporary file renamed into place)."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
