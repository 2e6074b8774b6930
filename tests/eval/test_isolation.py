"""Label isolation: nothing a method is given tells it which response the user chose."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

import pytest

from personalrewardbench.data.schema import Benchmark, PreferencePair, Query
from personalrewardbench.evaluate import QueryKey, make_queries, query_id_for, run_evaluation
from personalrewardbench.methods import Method, MethodEnv
from personalrewardbench.query_keys import QUERY_KEY_FILE, fixed_secret, new_secret, read_key_file
from personalrewardbench.results import read_predictions
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
    queries, keys = make_queries(bench.pairs_of("test"), new_secret())
    q = queries[0]
    assert not hasattr(q, "__dict__")  # slots: nothing extra can ride along
    with pytest.raises(dataclasses.FrozenInstanceError):
        q.first = "x"  # type: ignore[misc]
    for q in queries:
        key = keys[q.query_id]
        assert key.pair_id not in q.query_id and "chosen" not in q.query_id
        assert len(q.query_id) == 24 and int(q.query_id, 16) >= 0


def _old_style_ids(pair_ids, seed, salt):
    """Ids as the harness used to derive them (HMAC keyed by seed and content hash), and variants of it."""
    import hashlib
    import hmac

    out = set()
    for key in (hashlib.sha256(f"prb-query-key\0{seed}\0{salt}".encode()).digest(), str(seed).encode(),
                salt.encode(), fixed_secret(seed)):
        for pid in pair_ids:
            for order in ("chosen_first", "chosen_second"):
                for msg in (f"{pid}\0{order}", f"prb-query\0{pid}\0{order}"):
                    out.add(hmac.new(key, msg.encode(), hashlib.sha256).hexdigest()[:24])
    return out


def test_query_ids_are_keyed_and_list_order_hides_the_order():
    bench = random_benchmark(n_users=40, n_test=10)
    test = bench.pairs_of("test")
    secret = new_secret()
    queries, keys = make_queries(test, secret)
    assert len(queries) == 2 * len(test)
    assert [q.query_id for q in queries] == sorted(keys)
    # knowing the seed, the content hash and the pair ids is not enough to rebuild one id
    assert not _old_style_ids([p.pair_id for p in test], 3, bench.content_hash) & set(keys)
    # where each pair's chosen-first query lands relative to its chosen-second one is a coin flip
    pos = {q.query_id: i for i, q in enumerate(queries)}
    first_before = sum(pos[query_id_for(p.pair_id, True, secret)] < pos[query_id_for(p.pair_id, False, secret)]
                       for p in test)
    assert 0.4 < first_before / len(test) < 0.6
    # ids are stable for one secret (any input order), and change with it
    again, _ = make_queries(list(reversed(test)), secret)
    assert [q.query_id for q in again] == [q.query_id for q in queries]
    other, _ = make_queries(test, new_secret())
    assert not {q.query_id for q in other} & set(keys)


def test_each_run_draws_its_own_secret_and_keeps_it_on_resume(tmp_path):
    bench = random_benchmark(n_users=4, n_test=5)
    runs = [tmp_path / "a", tmp_path / "b"]
    for run in runs:
        run_evaluation(SpyMethod(), bench, MethodEnv(seed=0), run, show_progress=False)
    ids = [{r["query_id"] for r in read_predictions(d)} for d in runs]
    assert len(ids[0]) == 40 and not ids[0] & ids[1]  # same seed, same benchmark: unrelated ids
    secret = read_key_file(runs[0])[0].secret
    assert len(secret) == 32 and os.stat(runs[0] / QUERY_KEY_FILE).st_mode & 0o777 == 0o600
    for name in ("results.json", "run.json", "progress.json", "predictions.jsonl", "artifacts.json"):
        assert secret.hex() not in (runs[0] / name).read_text()
    # a rerun that resumes the folder keeps the ids
    run_evaluation(SpyMethod(), bench, MethodEnv(seed=0), runs[0], show_progress=False)
    assert read_key_file(runs[0])[0].secret == secret


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
    """Knows the seed, the benchmark content hash and the pair-id pattern and tries to rebuild the query ids."""

    name = "id-cheat"
    content_hash = ""

    def predict(self, queries):
        guesses = {}
        for q in queries:
            pids = [f"{q.user_id}-p{k}" for k in range(20)]
            for qid in _old_style_ids(pids, self.env.seed, self.content_hash):
                guesses[qid] = 1.0
        return [guesses.get(q.query_id, 0.5) for q in queries]


def test_cheats_get_nothing(tmp_path):
    bench = random_benchmark(n_users=30, n_test=10, seed=5)
    res = run_evaluation(PositionCheat(), bench, MethodEnv(seed=0), tmp_path / "a", show_progress=False)
    assert 0.4 < res["scores"]["accuracy"] < 0.6
    cheat = IdCheat()
    cheat.content_hash = bench.content_hash
    res = run_evaluation(cheat, bench, MethodEnv(seed=0), tmp_path / "b", show_progress=False)
    assert res["scores"]["n_ties"] == res["scores"]["n_judgments"]  # not one rebuilt id matched
