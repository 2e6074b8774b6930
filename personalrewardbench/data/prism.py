"""Raw PRISM (``HannahRoseKirk/prism-alignment``) -> per-user preference pairs, and the survey.

Conversations config: one record per conversation with ``conversation_id``,
``user_id``, ``conversation_type`` and ``conversation_history``, a list of
entries {turn, role ("user"|"model"), content, within_turn_id, model_name,
model_provider, score, if_chosen}. In each turn the user rated several model
responses (four in the opening turn, two later) and the chosen one continues the
conversation. Survey config: one record per user_id with demographics and stated
preferences -> the user's profile.

How ratings become pairs (``PrismSettings.pairs``, README "Leakage"):

- ``opening-disjoint`` (default): the opening turn only, its rated responses matched into
  disjoint pairs (no response in two pairs), the higher rating winning by more than
  ``min_score_gap``: as many pairs as the ratings allow (two of four responses' worth at
  most), and among those matchings the one whose smallest rating gap is largest (ties: the
  first in rating order). Contexts then hold no assistant turn, and no response is judged
  twice, so a test label cannot be read off the structure of a user's queries.
- ``all-lower`` (the earlier construction): in every turn (``turns="first"``: the opening one
  only), the chosen response against each response rated strictly lower; the context is the
  conversation so far along the chosen branch. The chosen response then appears in several
  pairs and as the assistant turn of the next turn's context, which gives labels away.

Equal ratings are ties and make no pair (counted).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from personalrewardbench.data.common import iter_records, record_files, user_id_from
from personalrewardbench.data.errors import DataError
from personalrewardbench.data.hub import load_hub_dataset
from personalrewardbench.data.records import iter_hub_rows
from personalrewardbench.data.schema import Message, PreferencePair
from personalrewardbench.data.text import Findings, normalize_text

PRISM_REPO = "HannahRoseKirk/prism-alignment"
PRISM_REVISION = "18ab5cfb37456f4ec8cbc00212ce54cf7b1239f6"  # "Update README.md", the data of the paper's release
NAME = "prism_raw"
SURVEY_HINT = ", or `--survey PATH` for the survey alone"  # dropped where the command has no --survey
LOCAL_HINT = (f"download the repo (`hf download --repo-type dataset {PRISM_REPO} --local-dir DIR`) and pass "
              f"`--input DIR` (conversations.jsonl + survey.jsonl){SURVEY_HINT}.")
PAIR_MODES = ("opening-disjoint", "all-lower")
TURN_MODES = ("all", "first")

Entry = Mapping[str, Any]


@dataclass(frozen=True)
class PrismSettings:
    pairs: str = "opening-disjoint"  # see module doc
    turns: str = "all"  # all-lower only: "all" turns, or "first" (the opening four-way rating only)
    min_score_gap: float = 0.0  # the winner's rating must exceed the other's by more than this
    conversation_types: tuple[str, ...] | None = None  # e.g. ("unguided",); None = all

    def __post_init__(self) -> None:
        if self.pairs not in PAIR_MODES:
            raise DataError(f"prism pairs must be one of {PAIR_MODES}, not {self.pairs!r}.")
        if self.turns not in TURN_MODES:
            raise DataError(f"prism turns must be one of {TURN_MODES}, not {self.turns!r}.")

    def to_dict(self) -> dict[str, Any]:
        return {"pairs": self.pairs, "turns": self.turns if self.pairs == "all-lower" else "first",
                "min_score_gap": self.min_score_gap,
                "conversation_types": list(self.conversation_types) if self.conversation_types else None}


def _num(v: Any, *, where: str, field: str) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise DataError(f"{NAME}: {where}: field {field!r} must be a finite number or null, got {v!r}. Fix the "
                        "record.")
    return float(v)


def _turns(rec: Mapping[str, Any], where: str, cid: str) -> dict[int, dict[str, list[Entry]]]:
    """The history's entries by turn and role, each checked (malformed entries raise DataError)."""
    hist = rec["conversation_history"]
    if not isinstance(hist, list):
        raise DataError(f"{NAME}: {where} ({cid}): field 'conversation_history' must be a list of turn entries.")
    by_turn: dict[int, dict[str, list[Entry]]] = defaultdict(lambda: {"user": [], "model": []})
    for k, e in enumerate(hist):
        f = f"conversation_history[{k}]"
        if not isinstance(e, Mapping):
            raise DataError(f"{NAME}: {where} ({cid}): field {f} must be an object.")
        role, turn, content = e.get("role"), e.get("turn"), e.get("content")
        if role not in ("user", "model"):
            raise DataError(f"{NAME}: {where} ({cid}): field {f}.role is {role!r}; expected 'user' or 'model'.")
        if isinstance(turn, bool) or not isinstance(turn, int):
            raise DataError(f"{NAME}: {where} ({cid}): field {f}.turn must be an integer, got {turn!r}.")
        if not isinstance(content, str):
            raise DataError(f"{NAME}: {where} ({cid}): field {f}.content must be a string.")
        if role == "model" and not isinstance(e.get("if_chosen"), bool):
            raise DataError(f"{NAME}: {where} ({cid}): field {f}.if_chosen must be true or false.")
        if role == "model":
            _num(e.get("score"), where=f"{where} ({cid})", field=f"{f}.score")
        by_turn[turn][role].append(e)
    for turn, entries in by_turn.items():
        if len(entries["user"]) != 1:
            raise DataError(f"{NAME}: {where} ({cid}): turn {turn} has {len(entries['user'])} user entries; "
                            "expected one.")
    return by_turn


def _usable(win: Entry, lose: Entry, counts: Counter[str]) -> bool:
    if not normalize_text(win["content"]) or not normalize_text(lose["content"]):
        counts["empty_response_dropped"] += 1
        return False
    if normalize_text(win["content"]) == normalize_text(lose["content"]):
        counts["identical_responses_dropped"] += 1
        return False
    return True


def _matchings(items: Sequence[Entry], beats: Any) -> Iterator[list[tuple[Entry, Entry]]]:
    """Every matching of ``items`` (in order) into pairs (a, b) with ``beats(a, b)``, some items left out."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for j, other in enumerate(rest):
        if beats(first, other) or beats(other, first):
            pair = (first, other) if beats(first, other) else (other, first)
            for m in _matchings(rest[:j] + rest[j + 1:], beats):
                yield [pair, *m]
    yield from _matchings(rest, beats)


def _disjoint_pairs(models: list[Entry], gap: float) -> list[tuple[Entry, Entry]]:
    """The opening-disjoint matching of one turn's rated responses (module doc)."""
    scores = {id(m): m.get("score") for m in models}
    if any(v is None for v in scores.values()):  # unrated: only the user's pick is known to be preferred
        chosen = [m for m in models if m["if_chosen"]]
        others = [m for m in models if not m["if_chosen"]]
        return [(chosen[0], others[0])] if len(chosen) == 1 and others else []
    order = sorted(models, key=lambda m: (-float(m["score"]), not m["if_chosen"]))

    def beats(a: Entry, b: Entry) -> bool:
        return float(a["score"]) - float(b["score"]) > gap

    best: list[tuple[Entry, Entry]] = []
    best_key: tuple[int, float] = (0, 0.0)
    for m in _matchings(order, beats):
        key = (len(m), min((float(a["score"]) - float(b["score"]) for a, b in m), default=0.0))
        if key > best_key:
            best, best_key = m, key
    return best


def _make_pair(cid: str, uid: str, turn: int, context: list[Message], win: Entry, lose: Entry, j: int,
               ctype: Any) -> tuple[PreferencePair, str]:
    wid_w, wid_l = win.get("within_turn_id", "c"), lose.get("within_turn_id", j)
    return PreferencePair(
        pair_id=f"prism:{cid}:t{turn}:{wid_w}>{wid_l}", user_id=uid, dataset=NAME, context=tuple(context),
        chosen=win["content"], rejected=lose["content"], split="train",
        meta={"conversation_id": cid, "turn": turn, "type": ctype, "chosen_model": win.get("model_name"),
              "rejected_model": lose.get("model_name"), "chosen_score": _num(win.get("score"), where=cid, field="score"),
              "rejected_score": _num(lose.get("score"), where=cid, field="score"),
              "chosen_is_users_pick": bool(win["if_chosen"])},
    ), cid


def pairs_from_conversation(rec: Mapping[str, Any], where: str, settings: PrismSettings,
                            counts: Counter[str]) -> list[tuple[PreferencePair, str]]:
    """(pair, group id) for one conversation record; malformed records raise DataError."""
    for field in ("conversation_id", "user_id", "conversation_history"):
        if rec.get(field) in (None, ""):
            raise DataError(f"{NAME}: {where}: missing field {field!r}. Each conversations record needs "
                            "conversation_id, user_id and conversation_history; fix or drop it.")
    cid, uid = str(rec["conversation_id"]), user_id_from(rec["user_id"], dataset=NAME, where=where)
    by_turn = _turns(rec, where, cid)
    ctype = rec.get("conversation_type")
    if settings.conversation_types and ctype not in settings.conversation_types:
        counts["conversations_other_type"] += 1
        return []
    out: list[tuple[PreferencePair, str]] = []
    if settings.pairs == "opening-disjoint":
        if not by_turn:
            return out
        turn = min(by_turn)
        models = by_turn[turn]["model"]
        context = [Message("user", by_turn[turn]["user"][0]["content"])]
        matched = _disjoint_pairs(models, settings.min_score_gap)
        if unpaired := len(models) - 2 * len(matched):
            counts["responses_left_unpaired"] += unpaired
        for j, (win, lose) in enumerate(matched):
            if _usable(win, lose, counts):
                out.append(_make_pair(cid, uid, turn, context, win, lose, j, ctype))
        if len(by_turn) > 1:
            counts["later_turns_dropped"] += len(by_turn) - 1
        return out
    context: list[Message] = []
    for turn in sorted(by_turn):
        users, models = by_turn[turn]["user"], by_turn[turn]["model"]
        chosen = [m for m in models if m["if_chosen"]]
        if len(chosen) != 1:
            counts["turns_without_single_chosen"] += 1
            break  # the chosen branch is undefined from here on
        context.append(Message("user", users[0]["content"]))
        c = chosen[0]
        c_score = _num(c.get("score"), where=where, field="score")
        for j, r in enumerate(m for m in models if m is not c):
            r_score = _num(r.get("score"), where=where, field="score")
            if c_score is not None and r_score is not None and not c_score - r_score > settings.min_score_gap:
                counts["score_ties_dropped"] += 1
                continue
            if _usable(c, r, counts):
                out.append(_make_pair(cid, uid, turn, context, c, r, j, ctype))
        context.append(Message("assistant", c["content"]))
        if settings.turns == "first":
            break
    return out


def conversation_records(input_path: Path | None, findings: Findings
                         ) -> tuple[Iterable[tuple[str, Mapping[str, Any]]], dict[str, Any]]:
    """(location, record) for every conversation (text repaired and counted in ``findings``), and
    the source record."""
    if input_path is None:
        def hub() -> Iterable[tuple[str, Mapping[str, Any]]]:
            ds = load_hub_dataset(PRISM_REPO, config="conversations", split="train", revision=PRISM_REVISION,
                                  local_hint=LOCAL_HINT)
            yield from iter_hub_rows(ds, f"{PRISM_REPO} conversations", findings, dataset=NAME)

        return hub(), {"id": PRISM_REPO, "config": "conversations", "revision": PRISM_REVISION, "kind": "hub",
                       "path": None}
    files = [input_path / "conversations.jsonl"] if (input_path / "conversations.jsonl").is_file() else \
        record_files(input_path)
    files = [f for f in files if "survey" not in f.name and "utterances" not in f.name and "metadata" not in f.name]
    if not files:
        raise DataError(f"{NAME}: no conversations file under {input_path}. {LOCAL_HINT}")

    def gen() -> Iterable[tuple[str, Mapping[str, Any]]]:
        for f in files:
            yield from iter_records(f, dataset=NAME, findings=findings)

    return gen(), {"id": PRISM_REPO, "config": "conversations", "kind": "local",
                   "path": [str(f) for f in files]}


def survey_source(survey: Any) -> tuple[list[Path] | None, dict[str, Any]]:
    if survey == "hub":
        return None, {"id": PRISM_REPO, "config": "survey", "revision": PRISM_REVISION, "kind": "hub", "path": None}
    p = Path(survey)
    files = [p / "survey.jsonl"] if p.is_dir() and (p / "survey.jsonl").is_file() else record_files(p) \
        if p.exists() else []
    if not files:
        raise DataError(f"{NAME}: survey not found at {p}; pass the PRISM survey.jsonl (or parquet), "
                        "or a copy of the prism-alignment repo.")
    return files, {"id": PRISM_REPO, "config": "survey", "kind": "local", "path": [str(f) for f in files]}


def load_survey(survey: Any, findings: Findings | None = None) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """{user_id: profile} from the PRISM survey (all survey fields except user_id), and the source.
    Repaired text is counted in ``findings``; so is a user's second (third, ...) survey row, which
    is ignored (``survey_duplicate_user``)."""
    findings = findings if findings is not None else Findings()
    files, src = survey_source(survey)
    if files is None:
        ds = load_hub_dataset(PRISM_REPO, config="survey", split="train", revision=PRISM_REVISION,
                              local_hint=LOCAL_HINT)
        records: Iterable[tuple[str, Mapping[str, Any]]] = iter_hub_rows(ds, "survey", findings,
                                                                         dataset=f"{NAME} survey")
    else:
        records = (x for f in files for x in iter_records(f, dataset=f"{NAME} survey", findings=findings))
    profiles: dict[str, dict[str, Any]] = {}
    for where, rec in records:
        uid = rec.get("user_id")
        if uid in (None, ""):
            raise DataError(f"{NAME} survey: {where}: missing field 'user_id'. Fix or drop the record.")
        uid = user_id_from(uid, dataset=f"{NAME} survey", where=where)
        if uid in profiles:
            findings.warn("survey_duplicate_user", f"{where}: user {uid!r} already has a survey row; this one is "
                                                   "ignored")
            continue
        profiles[uid] = {k: v for k, v in rec.items() if k != "user_id"}
    return profiles, src


def default_survey_for(input_path: Path | None) -> Any:
    if input_path is None:
        return "hub"
    if input_path.is_dir() and (input_path / "survey.jsonl").is_file():
        return input_path / "survey.jsonl"
    return None

