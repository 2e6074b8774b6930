"""The synthetic sample benchmark: generated users with planted, differing preferences.

Used by ``prb run`` when the published benchmark cannot be downloaded, and by
tests. Nothing here comes from third-party data: the questions and answer
points are written for this project (:mod:`.synthetic_topics`) and rendered in
five binary style dimensions:

- ``long``: all four points with an elaboration, or two points;
- ``bullets``: a bulleted list, or prose;
- ``formal``: formal opener/closer, or a casual one;
- ``hedged``: opens with a hedge, or states things directly;
- ``example``: ends with a concrete example, or not.

Each user has a primary dimension (weight 3) and a secondary one (weight 1.5),
each with a sign (prefers the style or its opposite). Primary dimensions and
signs cycle over all ten (dimension, sign) archetypes, so for every style half
of the users who care about it want it and half want its opposite: half of the
length-driven users prefer the shorter answer, and the ``length`` and
``position`` shortcut baselines stay near chance, while a method that learns each
user's taste from their own train pairs can get far above it.

Rows are produced in the published hub schema (``MichaelR207/*_personalized_0125``:
user_id, conversation_id, context, chosen, rejected, split, flip, turns, type,
dataset, ...) and loaded through the same row loader as the published data.
Every random choice is seeded per item (hash of seed, user and item index).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping
from typing import Any

from personalrewardbench.data.schema import Benchmark
from personalrewardbench.data.synthetic_topics import (
    CASUAL_CLOSE,
    CASUAL_OPEN,
    DIRECT,
    ELABORATIONS,
    FORMAL_CLOSE,
    FORMAL_OPEN,
    HEDGES,
    TOPICS,
)

NAME = "synthetic-sample"
GENERATOR_VERSION = "2"  # v2: 40 users (4 per archetype), 16-24 train, 4 val and 8 test pairs each
# Default size: large enough that the per-user signal separates a method that learns each user's
# taste (embed-logreg, ~70% [65, 75]) from the shortcuts (random, position, length: ~50%, 95% CI
# about +-5 points over 320 test pairs) beyond their CIs, small enough to embed on a CPU in about a minute.
N_USERS = 40
N_TRAIN = (16, 24)
N_VAL = 4
N_TEST = 8
DIMENSIONS: tuple[str, ...] = ("long", "bullets", "formal", "hedged", "example")
PRIMARY_WEIGHT = 3.0
SECONDARY_WEIGHT = 1.5
NOISE_SCALE = 0.5  # logistic noise on the utility difference
P_PRIMARY_DIFFERS = 0.85  # how often a pair differs on the user's primary dimension
P_OTHER_DIFFERS = 0.35  # how often it differs on each other dimension


def _rng(seed: int, *parts: object) -> random.Random:
    key = "\x1f".join(str(p) for p in (seed, *parts)).encode()
    return random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))


def user_ids(n_users: int) -> list[str]:
    return [f"synth-user-{i:03d}" for i in range(n_users)]


def planted_preferences(seed: int = 0, n_users: int = N_USERS) -> dict[str, dict[str, float]]:
    """user_id -> {dimension: signed weight}: the ground truth each user's choices follow.

    Not part of the benchmark (methods never see it); for tests and documentation.
    """
    out: dict[str, dict[str, float]] = {}
    archetypes = [(d, s) for d in DIMENSIONS for s in (1.0, -1.0)]
    for i, uid in enumerate(user_ids(n_users)):
        primary, sign = archetypes[i % len(archetypes)]
        rng = _rng(seed, "user", uid)
        secondary = rng.choice([d for d in DIMENSIONS if d != primary])
        out[uid] = {primary: sign * PRIMARY_WEIGHT, secondary: rng.choice((1.0, -1.0)) * SECONDARY_WEIGHT}
    return out


def render_response(topic: Mapping[str, Any], style: Mapping[str, bool], rng: random.Random) -> str:
    """One answer to ``topic`` written in ``style`` (a value per dimension)."""
    points = list(topic["points"]) if style["long"] else list(topic["points"])[:2]
    opener = rng.choice(FORMAL_OPEN if style["formal"] else CASUAL_OPEN)
    lead = rng.choice(HEDGES if style["hedged"] else DIRECT)
    if style["hedged"]:
        points = [f"you might {p}" if i % 2 == 0 else f"it could help to {p}" for i, p in enumerate(points)]
    sentences = [p[0].upper() + p[1:] + "." for p in points]
    if style["long"]:  # one elaboration, so long answers stay clearly longer without costing many tokens
        sentences[0] = f"{sentences[0]} {rng.choice(ELABORATIONS)}"
    if style["bullets"]:
        body = lead + "\n" + "\n".join(f"- {s}" for s in sentences)
    else:
        connectors = ("First,", "Then,", "Also,", "Finally,")
        body = lead + " " + " ".join(f"{connectors[i]} {s[0].lower()}{s[1:]}" for i, s in enumerate(sentences))
    parts = [opener, body]
    if style["example"]:
        parts.append(f"For example, {topic['example']}.")
    parts.append(rng.choice(FORMAL_CLOSE if style["formal"] else CASUAL_CLOSE))
    return "\n\n".join(parts)


def _utility(weights: Mapping[str, float], style: Mapping[str, bool]) -> float:
    return sum(w * (1.0 if style[d] else -1.0) for d, w in weights.items())


def _pair_styles(rng: random.Random, primary: str) -> tuple[dict[str, bool], dict[str, bool]]:
    a = {d: rng.random() < 0.5 for d in DIMENSIONS}
    b = dict(a)
    if rng.random() < P_PRIMARY_DIFFERS:
        b[primary] = not a[primary]
    for d in DIMENSIONS:
        if d != primary and rng.random() < P_OTHER_DIFFERS:
            b[d] = not a[d]
    if a == b:  # always differ somewhere
        d = rng.choice([d for d in DIMENSIONS if d != primary])
        b[d] = not a[d]
    return a, b


def sample_rows(
    seed: int = 0,
    n_users: int = N_USERS,
    n_train: tuple[int, int] = N_TRAIN,
    n_val: int = N_VAL,
    n_test: int = N_TEST,
    multi_turn_rate: float = 0.2,
) -> list[dict[str, Any]]:
    """The benchmark's rows in the published hub schema, sorted by (user_id, conversation_id).

    ``n_train`` is an inclusive range: each user gets a seeded number of train
    pairs in it (so accuracy against history size can be studied).
    """
    prefs = planted_preferences(seed, n_users)
    rows: list[dict[str, Any]] = []
    for uid in user_ids(n_users):
        weights = prefs[uid]
        primary = max(weights, key=lambda d: abs(weights[d]))
        k_train = _rng(seed, "n_train", uid).randint(n_train[0], n_train[1])
        splits = ["train"] * k_train + ["val"] * n_val + ["test"] * n_test
        for k, split in enumerate(splits):
            rng = _rng(seed, "pair", uid, k)
            topic = TOPICS[rng.randrange(len(TOPICS))]
            style_a, style_b = _pair_styles(rng, primary)
            text_a, text_b = render_response(topic, style_a, rng), render_response(topic, style_b, rng)
            diff = _utility(weights, style_a) - _utility(weights, style_b)
            u = min(max(rng.random(), 1e-12), 1 - 1e-12)
            noise = NOISE_SCALE * math.log(u / (1 - u))
            a_wins = (diff + noise) > 0
            chosen, rejected = (text_a, text_b) if a_wins else (text_b, text_a)
            context = [{"role": "user", "content": str(topic["q"])}]
            if rng.random() < multi_turn_rate:
                prev = TOPICS[rng.randrange(len(TOPICS))]
                prev_style = {d: rng.random() < 0.5 for d in DIMENSIONS}
                context = [
                    {"role": "user", "content": str(prev["q"])},
                    {"role": "assistant", "content": render_response(prev, prev_style, rng)},
                    {"role": "user", "content": f"Thanks. Different question: {topic['q']}"},
                ]
            rows.append({
                "user_id": uid,
                "conversation_id": f"{uid}-c{k:03d}",
                "context": context,
                "chosen": {"role": "model", "content": chosen},
                "rejected": {"role": "model", "content": rejected},
                "split": split,
                "flip": rng.random() < 0.5,
                "turns": sum(1 for m in context if m["role"] == "user"),
                "type": "synthetic",
                "dataset": NAME,
            })
    rows.sort(key=lambda r: (r["user_id"], r["conversation_id"]))
    return rows


def sample_benchmark(seed: int = 0, n_users: int = N_USERS, n_train: tuple[int, int] = N_TRAIN, n_val: int = N_VAL,
                     n_test: int = N_TEST) -> Benchmark:
    """The synthetic sample benchmark (manifest name ``synthetic-sample``, ``synthetic=True``)."""
    rows = sample_rows(seed=seed, n_users=n_users, n_train=n_train, n_val=n_val, n_test=n_test)
    sources = ({
        "id": NAME,
        "kind": "synthetic",
        "revision": f"generator-v{GENERATOR_VERSION}",
        "path": None,
        "note": "generated by personalrewardbench.data.synthetic; synthetic users with planted preferences",
        "settings": {"seed": seed, "n_users": n_users, "n_train": list(n_train), "n_val": n_val, "n_test": n_test},
    },)
    from personalrewardbench.data.published import benchmark_from_rows

    return benchmark_from_rows(rows, name=NAME, sources=sources, profiles=None, synthetic=True,
                               filters={"split": "generated per user: train, then val, then test"})
