"""Raw Chatbot Arena (``lmsys/chatbot_arena_conversations``) -> per-user preference pairs.

Record schema: question_id, model_a, model_b, winner ("model_a" | "model_b" |
"tie" | "tie (bothbad)"), judge (the voter's id -> user), conversation_a and
conversation_b (lists of {role: "user"|"assistant", content}; the same user
turns, each model's own answers), turn, anony, language, tstamp,
openai_moderation, toxic_chat_tag.

Ties are not preferences and are dropped (counted). A multi-turn battle was
judged on the whole exchange; ``multi_turn`` says how it becomes a pair:
``prefix_a`` (default) keeps every turn: the context is conversation_a up to the
last user message and the pair is the two final answers. conversation_a is used
whatever the verdict, so the context carries no hint of the label.
``first_turn`` keeps only the opening question and the two first answers;
``drop`` skips multi-turn battles.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from personalrewardbench.data.common import bool_field, iter_records, messages_from, record_files, user_id_from
from personalrewardbench.data.errors import DataError
from personalrewardbench.data.hub import load_hub_dataset
from personalrewardbench.data.records import iter_hub_rows
from personalrewardbench.data.schema import Message, PreferencePair
from personalrewardbench.data.text import Findings, normalize_text

ARENA_REPO = "lmsys/chatbot_arena_conversations"
# Commit sha not resolvable from this workplace; pin with --revision for exact reproducibility.
ARENA_REVISION = "main"
NAME = "chatbot_arena_raw"
WINNERS = ("model_a", "model_b", "tie", "tie (bothbad)")
MULTI_TURN_MODES = ("prefix_a", "first_turn", "drop")
LOCAL_HINT = (f"the dataset is gated: accept its terms on the hub, download it (`hf download --repo-type dataset "
              f"{ARENA_REPO} --local-dir DIR`) and pass `--input DIR` (its data/*.parquet) or a jsonl/parquet file.")


@dataclass(frozen=True)
class ArenaSettings:
    multi_turn: str = "prefix_a"
    languages: tuple[str, ...] | None = None  # e.g. ("English",); None = all
    anony_only: bool = False  # keep only battles where the models were hidden from the voter

    def __post_init__(self) -> None:
        if self.multi_turn not in MULTI_TURN_MODES:
            raise DataError(f"multi_turn must be one of {MULTI_TURN_MODES}, not {self.multi_turn!r}.")

    def to_dict(self) -> dict[str, Any]:
        return {"multi_turn": self.multi_turn, "languages": list(self.languages) if self.languages else None,
                "anony_only": self.anony_only, "drop_ties": True}


def _turns(conv: tuple[Message, ...], where: str, field: str) -> list[tuple[str, str]]:
    """(user, assistant) exchanges of a conversation that alternates user/assistant."""
    if not conv or len(conv) % 2:
        raise DataError(f"{NAME}: {where}: field {field!r} must alternate user/assistant messages and end with "
                        f"an assistant answer (got {len(conv)} messages). Fix or drop the record.")
    out = []
    for k in range(0, len(conv), 2):
        u, a = conv[k], conv[k + 1]
        if u.role != "user" or a.role != "assistant":
            raise DataError(f"{NAME}: {where}: field {field}[{k}:{k + 2}] has roles {u.role}/{a.role}; expected "
                            "user then assistant. Fix or drop the record.")
        out.append((u.content, a.content))
    return out


def pair_from_battle(rec: Mapping[str, Any], where: str, settings: ArenaSettings,
                     counts: Counter[str]) -> tuple[PreferencePair, str] | None:
    for field in ("question_id", "judge", "winner", "conversation_a", "conversation_b"):
        if rec.get(field) in (None, ""):
            raise DataError(f"{NAME}: {where}: missing field {field!r}. Each battle needs question_id, judge, "
                            "winner, conversation_a and conversation_b; fix or drop it.")
    user_id = user_id_from(rec["judge"], dataset=NAME, where=where, field="judge")
    anony = bool_field(rec, "anony", dataset=NAME, where=where)
    winner = rec["winner"]
    if winner not in WINNERS:
        raise DataError(f"{NAME}: {where}: field 'winner' is {winner!r}; expected one of {list(WINNERS)}.")
    if winner.startswith("tie"):
        counts["ties_dropped"] += 1
        return None
    if settings.languages and rec.get("language") not in settings.languages:
        counts["other_language_dropped"] += 1
        return None
    if settings.anony_only and not anony:
        counts["not_anonymous_dropped"] += 1
        return None
    qid = str(rec["question_id"])
    ta = _turns(messages_from(rec["conversation_a"], dataset=NAME, where=where, field="conversation_a"), where,
                "conversation_a")
    tb = _turns(messages_from(rec["conversation_b"], dataset=NAME, where=where, field="conversation_b"), where,
                "conversation_b")
    if [normalize_text(u) for u, _ in ta] != [normalize_text(u) for u, _ in tb]:
        counts["mismatched_user_turns_dropped"] += 1
        return None
    if len(ta) > 1 and settings.multi_turn == "drop":
        counts["multi_turn_dropped"] += 1
        return None
    if settings.multi_turn == "first_turn":
        ta, tb = ta[:1], tb[:1]
    context: list[Message] = []
    for u, a in ta[:-1]:
        context += [Message("user", u), Message("assistant", a)]
    context.append(Message("user", ta[-1][0]))
    a_last, b_last = ta[-1][1], tb[-1][1]
    chosen, rejected = (a_last, b_last) if winner == "model_a" else (b_last, a_last)
    if not normalize_text(chosen) or not normalize_text(rejected):
        counts["empty_response_dropped"] += 1
        return None
    if normalize_text(chosen) == normalize_text(rejected):
        counts["identical_responses_dropped"] += 1
        return None
    side = winner
    other = "model_b" if side == "model_a" else "model_a"
    meta = {"question_id": qid, "winner": winner, "chosen_model": rec.get("model_a" if side == "model_a" else
                                                                          "model_b"),
            "rejected_model": rec.get(other), "language": rec.get("language"), "turns": len(ta),
            "source_turns": rec.get("turn"), "anony": rec.get("anony"), "tstamp": rec.get("tstamp")}
    pair = PreferencePair(pair_id=f"arena:{qid}", user_id=user_id, dataset=NAME, context=tuple(context),
                          chosen=chosen, rejected=rejected, split="train", meta=meta)
    return pair, qid


def battle_records(input_path: Path | None, findings: Findings) -> tuple[Iterable[tuple[str, Mapping[str, Any]]],
                                                                         dict[str, Any]]:
    """(location, record) for every battle (text repaired and counted in ``findings``), and the source."""
    if input_path is None:
        return _hub_records(findings), {"id": ARENA_REPO, "revision": ARENA_REVISION, "kind": "hub", "path": None}
    files = record_files(input_path)
    if not files:
        raise DataError(f"{NAME}: no .jsonl/.json/.parquet files under {input_path}. {LOCAL_HINT}")

    def gen() -> Iterable[tuple[str, Mapping[str, Any]]]:
        for f in files:
            yield from iter_records(f, dataset=NAME, findings=findings)

    return gen(), {"id": ARENA_REPO, "kind": "local", "path": [str(f) for f in files]}


def _hub_records(findings: Findings) -> Iterable[tuple[str, Mapping[str, Any]]]:
    ds = load_hub_dataset(ARENA_REPO, split="train", revision=ARENA_REVISION, local_hint=LOCAL_HINT)
    yield from iter_hub_rows(ds, ARENA_REPO, findings, dataset=NAME)
