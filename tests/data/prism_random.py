"""Generator of PRISM conversations in the exact raw schema (HannahRoseKirk/prism-alignment,
config ``conversations``; see fixtures/prism-alignment/conversations.jsonl) with random texts and
random ratings, so any label a method reads off the data comes from its structure alone.

Every conversation has ``turns`` turns: the opening one rates four responses, each later one
two (as in PRISM); ratings within a turn are distinct, the highest-rated response is the one
chosen (``if_chosen``) and continues the conversation. Texts are random word strings, unique
across the whole file.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from tests.data.helpers import write_jsonl

WORDS = ("apple river stone light quick slow green paper window music garden simple maybe across "
         "answer better cloud dinner early field honest island jacket kettle lemon market number ocean "
         "planet quiet rabbit summer table umbrella valley winter yellow zebra bridge candle").split()
MODELS = ("llama-2-7b-chat", "gpt-4", "claude-2", "mistral-7b-instruct", "command", "falcon-7b-instruct")
TYPES = ("unguided", "values guided", "controversy guided")
ATTRIBUTES = ("values", "fluency", "factuality", "safety", "diversity", "creativity", "helpfulness")


def _text(rng: random.Random, seen: set[str]) -> str:
    while True:
        t = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 30))).capitalize() + "."
        if t not in seen:
            seen.add(t)
            return t


def _entry(turn: int, role: str, content: str, **model: Any) -> dict[str, Any]:
    return {"turn": turn, "role": role, "content": content, "model_provider": model.get("provider"),
            "model_name": model.get("name"), "score": model.get("score"), "if_chosen": model.get("chosen"),
            "within_turn_id": model.get("wid")}


def conversation(rng: random.Random, cid: str, uid: str, turns: int, seen: set[str]) -> dict[str, Any]:
    history: list[dict[str, Any]] = []
    models = rng.sample(MODELS, 4)
    continuing = None
    for turn in range(turns):
        history.append(_entry(turn, "user", _text(rng, seen)))
        names = models if turn == 0 else [continuing, continuing]
        scores = rng.sample(range(1, 101), len(names))
        best = max(range(len(names)), key=lambda i: scores[i])
        for wid, (name, score) in enumerate(zip(names, scores, strict=True)):
            history.append(_entry(turn, "model", _text(rng, seen), provider=f"provider_{name.split('-')[0]}",
                                  name=name, score=score, chosen=wid == best, wid=wid))
        continuing = names[best]
    return {
        "conversation_id": cid, "user_id": uid,
        "generated_datetime": f"2023-11-{rng.randint(10, 28)} {rng.randint(10, 23)}:{rng.randint(10, 59)}:00",
        "timing_duration_s": round(rng.uniform(60, 900), 1), "timing_duration_mins": None,
        "conversation_type": rng.choice(TYPES), "opening_prompt": history[0]["content"],
        "conversation_turns": turns, "conversation_history": history,
        "performance_attributes": {a: rng.randint(0, 100) for a in ATTRIBUTES},
        "choice_attributes": {a: rng.randint(0, 100) for a in ATTRIBUTES},
        "open_feedback": _text(rng, seen), "included_in_balanced_subset": rng.random() < 0.5,
    }


def write_random_prism(folder: Path, *, users: int = 8, conversations: int = 6, turns: int = 3,
                       seed: int = 0) -> Path:
    """``folder/conversations.jsonl`` (no survey) with ``users`` x ``conversations`` conversations."""
    rng = random.Random(seed)
    seen: set[str] = set()
    rows = []
    for u in range(users):
        for c in range(conversations):
            row = conversation(rng, f"c{u:02d}{c:02d}", f"user{u:02d}", turns, seen)
            row["timing_duration_mins"] = round(row["timing_duration_s"] / 60, 2)
            rows.append(row)
    write_jsonl(folder / "conversations.jsonl", rows)
    return folder
