"""Validation: errors name dataset, row and field with a fix; warnings are counted."""

from __future__ import annotations

from dataclasses import replace

import pytest

from personalrewardbench.data import DataError
from personalrewardbench.data.schema import Message
from personalrewardbench.data.store import make_benchmark
from personalrewardbench.data.validate import validate_pairs
from tests.conftest import make_tiny_benchmark


def _pairs():
    return list(make_tiny_benchmark(n_users=2).pairs)


def _locate(i):
    return f"input.jsonl line {i + 1}"


def test_clean_benchmark_has_no_warnings():
    assert validate_pairs(_pairs(), None, name="tiny") == {}


@pytest.mark.parametrize("change,match", [
    (dict(chosen="  "), r"tiny: input\.jsonl line 3 \(pair_id='user0-p2'\): field 'chosen' is empty"),
    (dict(rejected=""), r"field 'rejected' is empty"),
    (dict(user_id=""), r"field 'user_id' is empty"),
    (dict(split="dev"), r"field 'split' is 'dev'"),
    (dict(context=()), r"field 'context' is empty"),
    (dict(context=(Message("robot", "hi"),)), r"field 'context\[0\]\.role' is 'robot'"),
])
def test_field_errors(change, match):
    pairs = _pairs()
    pairs[2] = replace(pairs[2], **change)
    with pytest.raises(DataError, match=match):
        validate_pairs(pairs, None, name="tiny", locate=_locate)


def test_identical_responses():
    pairs = _pairs()
    pairs[0] = replace(pairs[0], rejected=pairs[0].chosen + " ")
    with pytest.raises(DataError, match=r"line 1 .*'chosen' is identical to 'rejected'.*drop it"):
        validate_pairs(pairs, None, name="tiny", locate=_locate)


def test_duplicate_pair_ids():
    pairs = _pairs()
    pairs[5] = replace(pairs[5], pair_id=pairs[1].pair_id)
    with pytest.raises(DataError, match=r"line 6: field 'pair_id' 'user0-p1' duplicates input\.jsonl line 2"):
        validate_pairs(pairs, None, name="tiny", locate=_locate)


def test_leakage_same_pair_in_train_and_test_either_order():
    pairs = _pairs()
    train = next(p for p in pairs if p.split == "train")
    pairs.append(replace(train, pair_id="copy", split="test", chosen=train.rejected, rejected=train.chosen))
    with pytest.raises(DataError, match=r"leakage for user 'user0'.*pair_id='copy', split test.*split train"):
        validate_pairs(pairs, None, name="tiny", locate=_locate)


def test_warnings_are_counted_in_manifest():
    pairs = _pairs()
    pairs = [p for p in pairs if not (p.user_id == "user1" and p.split == "test")]  # user1: no test pairs
    train = next(p for p in pairs if p.split == "train")
    pairs.append(replace(train, pair_id="zz-dup"))  # same content, same split: warning only
    pairs.append(replace(train, pair_id="zz-ctx", context=train.context + (Message("assistant", "ok"),)))
    bench = make_benchmark(pairs, None, name="tiny", sources=[{"id": "t"}])
    assert bench.manifest.warnings == {"context_not_ending_with_user": 1, "duplicate_pair_content": 1,
                                       "users_without_test_pairs": 1}


def test_empty_benchmark_is_an_error():
    with pytest.raises(DataError, match="no pairs"):
        validate_pairs([], None, name="tiny")
