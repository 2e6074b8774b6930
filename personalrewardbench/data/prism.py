"""Raw PRISM (``HannahRoseKirk/prism-alignment``) -> per-user preference pairs, and the survey.

Conversations config: one record per conversation with ``conversation_id``,
``user_id``, ``conversation_type`` and ``conversation_history``, a list of
entries {turn, role ("user"|"model"), content, within_turn_id, model_name,
model_provider, score, if_chosen}. In each turn the user rated several model
responses (four in the opening turn, two later) and the chosen one continues the
conversation. A pair is the chosen response against each other response of the
same turn rated strictly lower (equal ratings are ties and are dropped); the
context is the conversation so far along the chosen branch. Survey config: one
record per user_id with demographics and stated preferences -> the user's profile.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from personalrewardbench.data.common import iter_records, record_files
from personalrewardbench.data.errors import DataError
from personalrewardbench.data.hub import load_hub_dataset
from personalrewardbench.data.schema import Message, PreferencePair

PRISM_REPO = "HannahRoseKirk/prism-alignment"
PRISM_REVISION = "18ab5cfb37456f4ec8cbc00212ce54cf7b1239f6"  # "Update README.md", the data of the paper's release
NAME = "prism_raw"
LOCAL_HINT = (f"download the repo (`hf download --repo-type dataset {PRISM_REPO} --local-dir DIR`) and pass "
              "`--input DIR` (conversations.jsonl + survey.jsonl), or `--survey PATH` for the survey alone.")


@dataclass(frozen=True)
class PrismSettings:
    turns: str = "all"  # "all" turns, or "first" (the opening four-way rating only)
    min_score_gap: float = 0.0  # chosen score must exceed the other's by more than this
    conversation_types: tuple[str, ...] | None = None  # e.g. ("unguided",); None = all

    def to_dict(self) -> dict[str, Any]:
        return {"turns": self.turns, "min_score_gap": self.min_score_gap,
                "conversation_types": list(self.conversation_types) if self.conversation_types else None}


def _num(v: Any, *, where: str, field: str) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise DataError(f"{NAME}: {where}: field {field!r} must be a number or null, got {v!r}. Fix the record.")
    return float(v)


def pairs_from_conversation(rec: Mapping[str, Any], where: str, settings: PrismSettings,
                            counts: Counter[str]) -> list[tuple[PreferencePair, str]]:
    """(pair, group id) for one conversation record; malformed records raise DataError."""
    for field in ("conversation_id", "user_id", "conversation_history"):
        if rec.get(field) in (None, ""):
            raise DataError(f"{NAME}: {where}: missing field {field!r}. Each conversations record needs "
                            "conversation_id, user_id and conversation_history; fix or drop it.")
    cid, uid, hist = str(rec["conversation_id"]), str(rec["user_id"]), rec["conversation_history"]
    if not isinstance(hist, list):
        raise DataError(f"{NAME}: {where} ({cid}): field 'conversation_history' must be a list of turn entries.")
    ctype = rec.get("conversation_type")
    if settings.conversation_types and ctype not in settings.conversation_types:
        counts["conversations_other_type"] += 1
        return []
    by_turn: dict[int, dict[str, list[Mapping[str, Any]]]] = defaultdict(lambda: {"user": [], "model": []})
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
    out: list[tuple[PreferencePair, str]] = []
    context: list[Message] = []
    for turn in sorted(by_turn):
        users, models = by_turn[turn]["user"], by_turn[turn]["model"]
        if len(users) != 1:
            raise DataError(f"{NAME}: {where} ({cid}): turn {turn} has {len(users)} user entries; expected one.")
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
            if not c["content"].strip() or not r["content"].strip():
                counts["empty_response_dropped"] += 1
                continue
            if c["content"].strip() == r["content"].strip():
                counts["identical_responses_dropped"] += 1
                continue
            wid_c, wid_r = c.get("within_turn_id", "c"), r.get("within_turn_id", j)
            out.append((PreferencePair(
                pair_id=f"prism:{cid}:t{turn}:{wid_c}>{wid_r}", user_id=uid, dataset=NAME, context=tuple(context),
                chosen=c["content"], rejected=r["content"], split="train",
                meta={"conversation_id": cid, "turn": turn, "type": ctype, "chosen_model": c.get("model_name"),
                      "rejected_model": r.get("model_name"), "chosen_score": c_score, "rejected_score": r_score},
            ), cid))
        context.append(Message("assistant", c["content"]))
        if settings.turns == "first":
            break
    return out


def conversation_records(input_path: Path | None) -> tuple[Iterable[tuple[str, Mapping[str, Any]]], dict[str, Any]]:
    """(location, record) for every conversation, and the source record."""
    if input_path is None:
        def hub() -> Iterable[tuple[str, Mapping[str, Any]]]:
            ds = load_hub_dataset(PRISM_REPO, config="conversations", split="train", revision=PRISM_REVISION,
                                  local_hint=LOCAL_HINT)
            for i, r in enumerate(ds):
                yield f"{PRISM_REPO} conversations row {i}", r

        return hub(), {"id": PRISM_REPO, "config": "conversations", "revision": PRISM_REVISION, "kind": "hub",
                       "path": None}
    files = [input_path / "conversations.jsonl"] if (input_path / "conversations.jsonl").is_file() else \
        record_files(input_path)
    files = [f for f in files if "survey" not in f.name and "utterances" not in f.name and "metadata" not in f.name]
    if not files:
        raise DataError(f"{NAME}: no conversations file under {input_path}. {LOCAL_HINT}")

    def gen() -> Iterable[tuple[str, Mapping[str, Any]]]:
        for f in files:
            yield from iter_records(f, dataset=NAME)

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


def load_survey(survey: Any) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """{user_id: profile} from the PRISM survey (all survey fields except user_id), and the source."""
    files, src = survey_source(survey)
    if files is None:
        ds = load_hub_dataset(PRISM_REPO, config="survey", split="train", revision=PRISM_REVISION,
                              local_hint=LOCAL_HINT)
        records: Iterable[tuple[str, Mapping[str, Any]]] = ((f"survey row {i}", r) for i, r in enumerate(ds))
    else:
        records = (x for f in files for x in iter_records(f, dataset=f"{NAME} survey"))
    profiles: dict[str, dict[str, Any]] = {}
    for where, rec in records:
        uid = rec.get("user_id")
        if uid in (None, ""):
            raise DataError(f"{NAME} survey: {where}: missing field 'user_id'. Fix or drop the record.")
        profiles[str(uid)] = {k: v for k, v in rec.items() if k != "user_id"}
    return profiles, src


def default_survey_for(input_path: Path | None) -> Any:
    if input_path is None:
        return "hub"
    if input_path.is_dir() and (input_path / "survey.jsonl").is_file():
        return input_path / "survey.jsonl"
    return None

