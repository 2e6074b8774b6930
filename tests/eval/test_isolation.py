"""Label isolation: nothing a method is given tells it which response the user chose."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import pytest

from personalrewardbench.data.schema import Benchmark, PreferencePair, Query
from personalrewardbench.evaluate import QueryKey, make_queries, query_id_for, run_evaluation
from personalrewardbench.methods import Method, MethodEnv
from tests.eval.helpers import SpyMethod, random_benchmark


def _walk(obj, seen=None, depth=0):
    """Every object reachable through dataclass fields, containers and attributes."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 8:
        return
    seen.add(id(obj))
    yield obj
    if isinstance(obj, (str, bytes, int, float, bool, type(None))):
        return
    if isinstance(obj, Mapping):
        children = [*obj.keys(), *obj.values()]
    elif isinstance(obj, (list, tuple, set, frozenset)):
        children = list(obj)
    elif dataclasses.is_dataclass(obj):
        children = [getattr(obj, f.name) for f in dataclasses.fields(obj)]
    else:
        children = list(vars(obj).values()) if hasattr(obj, "__dict__") else []
    for c in children:
        yield from _walk(c, seen, depth + 1)


def test_query_carries_no_label_fields():
    assert [f.name for f in dataclasses.fields(Query)] == ["query_id", "user_id", "context", "first", "second"]
    bench = random_benchmark(n_users=2, n_test=3)
    queries, keys = make_queries(bench.pairs_of("test"), seed=0, salt=bench.content_hash)
    q = queries[0]
    assert not hasattr(q, "__dict__")  # slots: nothing extra can ride along
    with pytest.raises(dataclasses.FrozenInstanceError):
        q.first = "x"  # type: ignore[misc]
    for q in queries:
        key = keys[q.query_id]
        assert key.pair_id not in q.query_id and "chosen" not in q.query_id
        assert len(q.query_id) == 24 and int(q.query_id, 16) >= 0


def test_query_ids_are_keyed_and_list_order_hides_the_order():
    bench = random_benchmark(n_users=40, n_test=10)
    test = bench.pairs_of("test")
    queries, keys = make_queries(test, seed=3, salt=bench.content_hash)
    assert len(queries) == 2 * len(test)
    assert [q.query_id for q in queries] == sorted(keys)
    # a method that knows the seed and the pair-id pattern cannot rebuild the ids without the salt
    assert not {query_id_for(p.pair_id, True, 3) for p in test} & set(keys)
    # where each pair's chosen-first query lands relative to its chosen-second one is a coin flip
    pos = {q.query_id: i for i, q in enumerate(queries)}
    first_before = sum(pos[query_id_for(p.pair_id, True, 3, bench.content_hash)]
                       < pos[query_id_for(p.pair_id, False, 3, bench.content_hash)] for p in test)
    assert 0.4 < first_before / len(test) < 0.6
    # ids are stable for a given seed and benchmark, and change with the seed
    again, _ = make_queries(list(reversed(test)), seed=3, salt=bench.content_hash)
    assert [q.query_id for q in again] == [q.query_id for q in queries]
    other, _ = make_queries(test, seed=4, salt=bench.content_hash)
    assert not {q.query_id for q in other} & set(keys)


def test_method_sees_no_test_label_anywhere(tmp_path):
    bench = random_benchmark(n_users=5, n_test=4)
    spy = SpyMethod()
    run_evaluation(spy, bench, MethodEnv(seed=1), tmp_path / "run", show_progress=False)
    test_ids = {p.pair_id for p in bench.pairs_of("test")}
    reachable = list(_walk([spy.seen_histories, spy.seen_queries, spy.env]))
    pairs = [o for o in reachable if isinstance(o, PreferencePair)]
    assert pairs and all(p.split in ("train", "val") and p.pair_id not in test_ids for p in pairs)
    assert not [o for o in reachable if isinstance(o, (QueryKey, Benchmark))]
    strings = {o for o in reachable if isinstance(o, str)}
    assert not strings & test_ids
    assert "chosen_first" not in strings and "chosen_second" not in strings
    assert len(spy.seen_queries) == 2 * len(test_ids)


class PositionCheat(Method):
    """Tries to exploit the query list: says 'first' for the first time it sees a conversation."""

    name = "cheat"

    def predict(self, queries):
        seen: set = set()
        out = []
        for q in queries:
            out.append(0.0 if q.context in seen else 1.0)
            seen.add(q.context)
        return out


class IdCheat(Method):
    """Knows the seed and the pair-id pattern and tries to rebuild the query ids."""

    name = "id-cheat"

    def predict(self, queries):
        guesses = {}
        for q in queries:
            uid = q.user_id
            for k in range(20):
                guesses[query_id_for(f"{uid}-p{k}", True, self.env.seed)] = 1.0
                guesses[query_id_for(f"{uid}-p{k}", False, self.env.seed)] = 0.0
        return [guesses.get(q.query_id, 0.5) for q in queries]


def test_cheats_get_nothing(tmp_path):
    bench = random_benchmark(n_users=30, n_test=10, seed=5)
    res = run_evaluation(PositionCheat(), bench, MethodEnv(seed=0), tmp_path / "a", show_progress=False)
    assert 0.4 < res["scores"]["accuracy"] < 0.6
    res = run_evaluation(IdCheat(), bench, MethodEnv(seed=0), tmp_path / "b", show_progress=False)
    assert res["scores"]["n_ties"] == res["scores"]["n_judgments"]  # not one rebuilt id matched
