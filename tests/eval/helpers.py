"""Small methods and builders shared by the evaluator tests (unit logic only)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from personalrewardbench.data.schema import Benchmark, Manifest, Message, PreferencePair, Query, content_hash
from personalrewardbench.methods import Method


def rec(pair_id: str, user_id: str, order: str, p: float | None) -> dict:
    return {"query_id": f"{pair_id}/{order}", "pair_id": pair_id, "user_id": user_id, "order": order, "p": p}


def both(pair_id: str, user_id: str, p_first: float | None, p_second: float | None) -> list[dict]:
    """The two judgments of a pair: chosen shown first gets ``p_first``, chosen shown second ``p_second``."""
    return [rec(pair_id, user_id, "chosen_first", p_first), rec(pair_id, user_id, "chosen_second", p_second)]


def random_benchmark(n_users: int = 20, n_test: int = 10, seed: int = 0, name: str = "rand",
                     profiles: bool = False) -> Benchmark:
    """Users with random-length answers; pair ids follow a guessable pattern on purpose."""
    rng = random.Random(seed)
    pairs = []
    profs = {}
    for u in range(n_users):
        uid = f"u{u:03d}"
        profs[uid] = {"age": "18-24"} if profiles else None
        for k in range(3 + n_test):
            split = "train" if k < 2 else "val" if k == 2 else "test"
            a = "word " * rng.randint(1, 30)
            b = "text " * rng.randint(1, 30)
            pairs.append(PreferencePair(pair_id=f"{uid}-p{k}", user_id=uid, dataset=name,
                                        context=(Message("user", f"q{k} of {uid}"),), chosen=a.strip(),
                                        rejected=b.strip(), split=split))
    manifest = Manifest(name=name, sources=({"id": "generated", "kind": "test"},), filters={}, seed=seed,
                        counts={"users": n_users}, content_hash=content_hash(pairs, profs), synthetic=True)
    return Benchmark(pairs=tuple(pairs), profiles=profs, manifest=manifest)


class SpyMethod(Method):
    """Records everything the harness hands it; answers by length."""

    name = "spy"

    def __init__(self) -> None:
        self.seen_histories: list = []
        self.seen_queries: list[Query] = []
        self.calls = 0

    def fit(self, histories):
        self.seen_histories = list(histories)

    def predict(self, queries: Sequence[Query]):
        self.calls += 1
        self.seen_queries += list(queries)
        return [1.0 if len(q.first) > len(q.second) else 0.0 if len(q.first) < len(q.second) else 0.5
                for q in queries]


class ConstantMethod(Method):
    name = "constant"

    def __init__(self, value: object = 0.7, n_extra: int = 0) -> None:
        self.value = value
        self.n_extra = n_extra

    def predict(self, queries):
        return [self.value] * (len(queries) + self.n_extra)


class CrashAfter(Method):
    """Crashes on the call after ``ok_calls`` predict calls (simulates an interrupted run)."""

    name = "crashy"

    def __init__(self) -> None:  # no config: an interrupted and a resumed run are the same run
        self.ok_calls = 10**9
        self.calls = 0
        self.predicted = 0

    def predict(self, queries):
        self.calls += 1
        if self.calls > self.ok_calls:
            raise KeyboardInterrupt
        self.predicted += len(queries)
        return [1.0 if len(q.first) >= len(q.second) else 0.0 for q in queries]


class ProfileMethod(Method):
    name = "needs-profile"
    capabilities = frozenset({"profile"})

    def predict(self, queries):
        return [0.5] * len(queries)


def write_method_folder(folder: Path, name: str, *, cls: str = "Adapter", body: str | None = None,
                        variants: str = "", config: str = "{}") -> Path:
    """A method folder in the submission.toml shape with adapter.py importing a sibling module."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "submission.toml").write_text(f'''[submission]
name = "{name}"
authors = ["Test Author"]
contact = "test@example.org"
description = "A test method."
license = "MIT"

[method]
entry = "adapter:{cls}"
config = {config}

[requirements]
llm = false
datasets = ["any"]
{variants}''')
    (folder / "README.md").write_text(f"# {name}\n")
    (folder / "constants.py").write_text(f"VALUE = {name!r}\n")
    (folder / "adapter.py").write_text(body or f'''
from personalrewardbench.methods import Method

from .constants import VALUE


class {cls}(Method):
    name = "x"

    def __init__(self, p: float = 1.0):
        self.p = p
        self.tag = VALUE

    def predict(self, queries):
        return [self.p] * len(queries)
''')
    return folder
