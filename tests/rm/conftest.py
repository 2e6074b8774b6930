"""Fixtures for the reward-model tests: the real embedded MiniLM, loaded once per session."""

from __future__ import annotations

import pytest

from personalrewardbench.data.schema import Benchmark, Manifest, Message, PreferencePair, content_hash


@pytest.fixture(scope="session")
def minilm() -> tuple:
    """(tokenizer, model) of the embedded MiniLM with its seed-0 untrained head, on the CPU."""
    from personalrewardbench.rewardmodel.models import load_reward_model

    return load_reward_model(None, device="cpu", seed=0)


def shared_context_benchmark(n_users: int = 6, n_train: int = 10, n_val: int = 4, n_test: int = 4) -> Benchmark:
    """Every user sees the SAME questions and answers; even users prefer the detailed answer, odd
    users the terse one. Nothing in a pair says who asked, so only a per-user model can beat 50%."""
    pairs, profiles = [], {}
    topics = ["tides", "rainbows", "volcanoes", "magnets", "glaciers", "comets", "earthquakes", "fog",
              "lightning", "deserts", "coral", "auroras", "monsoons", "geysers", "caves", "dunes", "hail", "tsunamis"]
    for u in range(n_users):
        uid = f"u{u:02d}"
        profiles[uid] = None
        k = 0
        for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
            for _ in range(n):
                t = topics[k % len(topics)]
                terse = f"{t.capitalize()} are natural."
                detailed = (f"{t.capitalize()} form through several interacting physical processes; here is a "
                            f"step by step explanation of how {t} develop, with examples and caveats.")
                chosen, rejected = (detailed, terse) if u % 2 == 0 else (terse, detailed)
                pairs.append(PreferencePair(pair_id=f"{uid}-{k:03d}", user_id=uid, dataset="shared",
                                            context=(Message("user", f"How do {t} work?"),), chosen=chosen,
                                            rejected=rejected, split=split, meta={}))
                k += 1
    manifest = Manifest(name="shared", sources=({"id": "hand-made", "kind": "test"},), filters={}, seed=0,
                        counts={"users": n_users, "pairs": len(pairs)}, content_hash=content_hash(pairs, profiles),
                        synthetic=True)
    return Benchmark(pairs=tuple(pairs), profiles=profiles, manifest=manifest)
