"""Which SynthesizeMe phase each proxied request belongs to, and what each side sends per phase.

The phase is read from the request itself, the same way for both sides, with
no help from either implementation:

- **the query pair**: every judge request ends with one comparison, so the
  final message contains both responses of exactly one known pair (the
  benchmark's pairs, each with its user and split). The split names the
  phase: train -> bootstrap, val -> search, test -> predict. The order of the
  two responses gives the judgment's order (chosen first or second).
- **the persona writer**: its final message holds several past judgments, or
  none, or exactly one; it is recognised by holding zero or two and more
  pairs, by DSPy's ``past_judgements`` field marker, or because the end of its
  reply (the persona), which no other reply of the side ends with, turns up in
  the instruction (first message) of later requests on the same side.
- **before/after the persona**: a judge request of a user that starts after
  that user's first persona request belongs to the second search
  (``bootstrap 2``, ``search 2``); before it, to the first. A persona request
  is the user's by the pairs it holds, else by the user's fit window (the
  reference fits users one after the other), else the side's first persona
  request is the boundary for users without a fit window of their own (ours
  runs each phase for all users at once).

Per (phase, side) it sums requests, tokens, judgments (distinct pair and
order), repeats of an identical prompt (identical requests, which a request
cache answers, and re-samples at another temperature or seed), distinct
instruction+demo prefixes (the candidate programs), replies that hit the cap,
and an estimate of the prompt tokens an unbounded prefix cache could reuse
(the longest common prefix with any earlier request of the same side, in
characters of the rendered messages, scaled by the request's own tokens per
character).
"""

from __future__ import annotations

import bisect
import json
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PHASES = ("bootstrap", "search 1", "persona", "bootstrap 2", "search 2", "predict", "other")
PERSONA_MARKERS = ("## past_judgements ##",)
DSPY_DONE = "[[ ## completed ## ]]"
TAIL_CHARS = 40


@dataclass(frozen=True)
class KnownPair:
    pair_id: str
    user_id: str
    split: str  # train / val / test
    chosen: str
    rejected: str


def _content(message: Mapping[str, Any]) -> str:
    c = message.get("content")
    if isinstance(c, list):  # content parts
        return "".join(str(p.get("text", "")) for p in c if isinstance(p, Mapping))
    return str(c or "")


def final_text(rec: Mapping[str, Any]) -> str:
    msgs = rec.get("messages")
    if msgs:
        return _content(msgs[-1])
    return str(rec.get("prompt") or "")


def first_text(rec: Mapping[str, Any]) -> str:
    msgs = rec.get("messages")
    return _content(msgs[0]) if msgs else ""


def rendered(rec: Mapping[str, Any]) -> str:
    msgs = rec.get("messages")
    if msgs:
        return "\x00".join(f"{m.get('role')}\x01{_content(m)}" for m in msgs)
    return str(rec.get("prompt") or "")


def pairs_in(text: str, pairs: Sequence[KnownPair]) -> list[tuple[KnownPair, str]]:
    """The known pairs whose both responses occur in ``text``, with the order shown."""
    out = []
    for p in pairs:
        i, j = text.find(p.chosen), text.find(p.rejected)
        if i >= 0 and j >= 0:
            out.append((p, "chosen-first" if i < j else "chosen-second"))
    return out


def _reply_tail(reply: str) -> str:
    text = (reply or "").replace(DSPY_DONE, "").strip()
    return text[-TAIL_CHARS:] if len(text) >= TAIL_CHARS // 2 else ""


def classify(records: Sequence[dict[str, Any]], pairs: Sequence[KnownPair],
             windows: Mapping[tuple[str, str], Sequence[tuple[float, float]]] | None = None) -> list[dict[str, Any]]:
    """Annotate each record (a copy) with ``phase``, ``user_id``, ``pair_id`` and ``order``.

    ``windows``: (side, user_id) -> [(start, end)] wall-clock spans in which only
    that user was being fitted (the reference's per-user fit), used to place
    persona requests that hold no pair.
    """
    windows = windows or {}
    out = [dict(r) for r in sorted(records, key=lambda r: r["t_start"])]
    first_seen: dict[tuple[str, str], float] = {}
    for r in out:
        key = (r["side"], first_text(r))
        first_seen.setdefault(key, r["t_start"])
    tails: dict[tuple[str, str], int] = {}
    for r in out:
        key = (r["side"], _reply_tail(r.get("reply") or ""))
        tails[key] = tails.get(key, 0) + 1
    for r in out:
        found = pairs_in(final_text(r), pairs)
        r["user_id"] = r["pair_id"] = r["order"] = None
        persona = len(found) != 1 or any(m in final_text(r) for m in PERSONA_MARKERS)
        if not persona:
            tail = _reply_tail(r.get("reply") or "")
            persona = bool(tail) and tails[(r["side"], tail)] == 1 and any(side == r["side"] and t >= r["t_start"] and tail in text
                                         for (side, text), t in first_seen.items())
        if persona:
            r["phase"] = "persona"
            users = {p.user_id for p, _ in found}
            if len(users) == 1:
                r["user_id"] = users.pop()
            else:
                for (side, uid), spans in windows.items():
                    if side == r["side"] and any(a <= r["t_start"] <= b for a, b in spans):
                        r["user_id"] = uid
            continue
        p, order = found[0]
        r.update(user_id=p.user_id, pair_id=p.pair_id, order=order, split=p.split)
        r["phase"] = {"test": "predict"}.get(p.split, "judge")
    persona_at: dict[tuple[str, str | None], float] = {}
    for r in out:
        if r["phase"] == "persona":
            for key in ((r["side"], r["user_id"]), (r["side"], None)):
                persona_at.setdefault(key, r["t_start"])
    for r in out:
        if r["phase"] != "judge":
            continue
        own = (r["side"], r["user_id"])
        # A user fitted in a window of its own (the reference) has only its own boundary; batched users
        # (ours) share the side's first persona request when theirs holds no pair.
        boundary = persona_at.get(own, None if own in windows else persona_at.get((r["side"], None)))
        after = boundary is not None and r["t_start"] >= boundary
        if r["split"] == "train":
            r["phase"] = "bootstrap 2" if after else "bootstrap"
        else:
            r["phase"] = "search 2" if after else "search 1"
    return out


def _lcp(a: str, b: str) -> int:
    return len(os.path.commonprefix([a, b]))


def shared_prefix_tokens(records: Sequence[Mapping[str, Any]]) -> list[float]:
    """Per record (in the given order): ~tokens of its prompt shared with an earlier record's prompt."""
    seen: list[str] = []
    out = []
    for r in records:
        s = rendered(r)
        k = bisect.bisect_left(seen, s)
        best = max([_lcp(s, seen[i]) for i in (k - 1, k) if 0 <= i < len(seen)], default=0)
        bisect.insort(seen, s)
        ptoks = float(r.get("prompt_tokens") or 0)
        out.append(ptoks * best / len(s) if s else 0.0)
    return out


def busy_seconds(spans: Iterable[tuple[float, float]]) -> float:
    """Length of the union of [start, end] intervals (seconds with at least one request in flight)."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(spans):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def phase_table(classified: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """phase -> side -> figures (see the module doc)."""
    shared: dict[int, float] = {}
    by_side: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in classified:
        by_side[r["side"]].append(r)
    for recs in by_side.values():
        for r, s in zip(recs, shared_prefix_tokens(recs), strict=True):
            shared[id(r)] = s
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in classified:
        groups[(r["phase"], r["side"])].append(r)
    table: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    for (phase, side), recs in groups.items():
        prompts = [json.dumps(r.get("messages") or r.get("prompt"), sort_keys=True) for r in recs]
        full = [p + json.dumps(r.get("params"), sort_keys=True) for p, r in zip(prompts, recs, strict=True)]
        prefixes = {json.dumps((r.get("messages") or [])[:-1], sort_keys=True) for r in recs}
        ptoks = [int(r.get("prompt_tokens") or 0) for r in recs]
        table[phase][side] = {
            "requests": len(recs),
            "prompt_tokens": sum(ptoks),
            "completion_tokens": sum(int(r.get("completion_tokens") or 0) for r in recs),
            "longest_prompt": max(ptoks, default=0),
            "failed_requests": sum(r["status"] >= 400 for r in recs),
            "judgments": len({(r["pair_id"], r["order"]) for r in recs if r.get("pair_id")}),
            "identical_repeats": len(full) - len(set(full)),
            "resamples": len(set(full)) - len(set(prompts)),
            "sampled_requests": sum(float((r.get("params") or {}).get("temperature") or 0) > 0 for r in recs),
            "instruction_demo_sets": len(prefixes),
            "capped_replies": sum(r.get("finish_reason") == "length" for r in recs),
            "shared_prefix_tokens": round(sum(shared[id(r)] for r in recs)),
            "busy_seconds": round(busy_seconds((r["t_start"], r["t_end"]) for r in recs), 1),
            "users": len({r["user_id"] for r in recs if r.get("user_id")}),
        }
    return dict(table)


ROWS = (("requests", "requests"), ("prompt tokens", "prompt_tokens"), ("completion tokens", "completion_tokens"),
        ("longest prompt", "longest_prompt"), ("judgments (pair x order)", "judgments"),
        ("identical repeats", "identical_repeats"), ("re-samples", "resamples"),
        ("sampled (temperature>0)", "sampled_requests"), ("instruction+demo sets", "instruction_demo_sets"),
        ("replies at the cap", "capped_replies"), ("~prefix-shareable tok", "shared_prefix_tokens"),
        ("failed requests", "failed_requests"), ("seconds in flight", "busy_seconds"))


def format_phase_table(table: Mapping[str, Mapping[str, Mapping[str, float]]], sides: Iterable[str]) -> str:
    """The per-phase figures as text: one block per phase, a column per side and ours minus reference."""
    sides = list(sides)
    head = f"{'phase / figure':<30}" + "".join(f"{s:>14}" for s in sides)
    if len(sides) == 2:
        head += f"{sides[1] + '-' + sides[0]:>16}"
    lines = [head]
    for phase in PHASES:
        if phase not in table:
            continue
        lines.append(f"[{phase}]")
        for label, key in ROWS:
            vals = [table[phase].get(s, {}).get(key, 0) for s in sides]
            line = f"  {label:<28}" + "".join(f"{v:>14,.0f}" for v in vals)
            if len(sides) == 2:
                line += f"{vals[1] - vals[0]:>+16,.0f}"
            lines.append(line)
    return "\n".join(lines)
