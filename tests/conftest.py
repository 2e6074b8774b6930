"""Shared fixtures. No test touches the network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from personalrewardbench.data.schema import Benchmark, Manifest, Message, PreferencePair, content_hash

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: idle OpenMP threads sleep (threads.py)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PRB_SHARED_DIR", REPO.parent / "shared"))
SUMMARIZE_DIR = SHARED / "data" / "summarize-from-feedback"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def summarize_dir() -> Path:
    """The real, unmodified summarize-from-feedback comparisons (read in place, never copied)."""
    if not (SUMMARIZE_DIR / "comparisons" / "batch18.json").exists():
        pytest.fail(f"real data missing: {SUMMARIZE_DIR}; set PRB_SHARED_DIR to the shared/ folder")
    return SUMMARIZE_DIR


def make_tiny_benchmark(n_users: int = 3, n_train: int = 4, n_val: int = 2, n_test: int = 3,
                        dataset: str = "tiny", profiles: bool = False) -> Benchmark:
    """A small hand-made benchmark: user u prefers the longer answer if u is even, else the shorter."""
    pairs = []
    profs = {}
    for u in range(n_users):
        uid = f"user{u}"
        profs[uid] = {"age": "25-34", "gender": "Female" if u % 2 else "Male"} if profiles else None
        k = 0
        for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
            for _i in range(n):
                short = f"Answer {k}."
                long = f"Answer {k}, explained in detail with several extra words of context."
                chosen, rejected = (long, short) if u % 2 == 0 else (short, long)
                pairs.append(PreferencePair(
                    pair_id=f"{uid}-p{k}", user_id=uid, dataset=dataset,
                    context=(Message("user", f"Question {k} from {uid}?"),),
                    chosen=chosen, rejected=rejected, split=split, meta={"i": k},
                ))
                k += 1
    manifest = Manifest(name=dataset, sources=({"id": "hand-made", "kind": "test"},), filters={}, seed=0,
                        counts={"users": n_users, "pairs": len(pairs)},
                        content_hash=content_hash(pairs, profs), synthetic=True)
    return Benchmark(pairs=tuple(pairs), profiles=profs, manifest=manifest)


@pytest.fixture
def tiny_benchmark() -> Benchmark:
    return make_tiny_benchmark()
