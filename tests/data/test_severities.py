"""Two severities: malformed rows and serialization accidents are errors for local and built data;
content quirks of the official published benchmark (hub layout) are warnings, counted with
their locations, shown by `prb data stats` and carried in every result on it."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from personalrewardbench.cli import main
from personalrewardbench.data import DataError, load_benchmark
from personalrewardbench.data.store import make_benchmark
from tests.conftest import make_tiny_benchmark
from tests.data.helpers import PUBLISHED_DIR, hub_copy, read_jsonl, write_jsonl

REPO = "chatbot_arena_personalized_0125"
SPLITS = ("train", "validation", "test")


def _rows(split: str) -> list[dict]:
    return read_jsonl(PUBLISHED_DIR / REPO / f"{split}.jsonl")


def _quirky(split: str, rows: list[dict]) -> None:
    """One row with identical responses (up to a newline: identical after normalization) in train,
    one row of the validation file whose `split` column says test."""
    if split == "train":
        rows[2]["rejected"] = {"role": "model", "content": rows[2]["chosen"]["content"] + "\n"}
    if split == "validation":
        rows[1]["split"] = "test"


def test_published_layout_counts_quirks_local_jsonl_refuses_them(tmp_path, capsys):
    copy = hub_copy(tmp_path, REPO, edit=_quirky)
    bench = load_benchmark(copy)
    m = bench.manifest
    assert m.official
    assert m.warnings["identical_responses"] == 1 and m.warnings["split_disagreement"] == 1
    assert m.warning_locations["split_disagreement"] == [
        "validation-00000-of-00001.parquet row 1: field 'split' is 'test' but the row is in hub split "
        "'validation' (used as 'test')"]
    assert m.warning_locations["identical_responses"][0].startswith("train-00000-of-00001.parquet row 2 ")
    n = {s: len(_rows(s)) for s in SPLITS}
    assert m.counts["splits"]["test"]["pairs"] == n["test"] + 1  # the row's own split column wins
    assert m.counts["splits"]["val"]["pairs"] == n["validation"] - 1
    assert m.counts["pairs"] == sum(n.values())  # nothing refused, nothing dropped
    assert main(["data", "stats", "--dataset", str(copy)]) == 0
    assert ("content quirks of the published benchmark: identical_responses=1, split_disagreement=1"
            in capsys.readouterr().out)
    # every result on it carries the counts
    assert main(["evaluate", "--method", "length", "--dataset", str(copy), "--out", str(tmp_path / "r"),
                 "--quiet"]) == 0
    res = json.loads(next((tmp_path / "r").rglob("results.json")).read_text())
    assert res["dataset"]["manifest"]["warnings"]["identical_responses"] == 1
    assert res["dataset"]["manifest"]["official"] is True
    # the same rows as a user's local jsonl: an error naming the row and field
    rows = []
    for s in SPLITS:
        part = _rows(s)
        _quirky(s, part)
        rows += part
    f = write_jsonl(tmp_path / "mine.jsonl", rows)
    with pytest.raises(DataError, match=r"mine\.jsonl line 3 .*field 'chosen' is identical to 'rejected'"):
        load_benchmark(f)
    assert main(["data", "validate", "--dataset", str(f)]) == 2
    assert "mine.jsonl line 3" in capsys.readouterr().err
    # and the official copy fails only under --strict
    assert main(["data", "validate", "--dataset", str(copy), "--strict"]) == 2
    assert "split_disagreement=1" in capsys.readouterr().err


def test_cross_split_repeat_after_normalization(tmp_path):
    """A test pair repeating a train pair up to a double space and a newline: leakage."""
    def repeat(split: str, rows: list[dict]) -> None:
        if split == "test":
            src = _rows("train")[0]
            rows[0] = dict(src, split="test", conversation_id="again",
                           chosen={"role": "model", "content": src["chosen"]["content"].replace(" ", "  ", 1) + "\n"})

    test_rows = _rows("test")
    repeat("test", test_rows)
    rows = _rows("train") + _rows("validation") + test_rows
    with pytest.raises(DataError, match=r"leakage for user .*split test.* repeats .*split train.*normalization"):
        load_benchmark(write_jsonl(tmp_path / "local.jsonl", rows))
    bench = load_benchmark(hub_copy(tmp_path, REPO, edit=repeat))
    assert bench.manifest.warnings["test_repeats_history"] == 1


@pytest.mark.parametrize("text", [
    "{'role': 'model', 'content': 'Paris is the capital.'}",  # Python repr (pandas/CSV round trip)
    '{"role": "assistant", "content": "Paris is the capital."}',  # JSON
])
def test_stringified_rejected_is_an_error_in_local_data(tmp_path, text):
    rows = [r for s in SPLITS for r in _rows(s)]
    rows[5]["rejected"] = text  # chosen stays an object
    with pytest.raises(DataError, match=r"line 6: field 'rejected' is a string \(a serialized message object "
                                        r"with role '(model|assistant)'\) but 'chosen' is a \{role, content\} object"):
        load_benchmark(write_jsonl(tmp_path / "round-trip.jsonl", rows))
    for r in rows:  # both sides strings now: the shape agrees, the content is still a serialized object
        r["chosen"], r["rejected"] = r["chosen"]["content"] if isinstance(r["chosen"], dict) else r["chosen"], \
            r["rejected"]["content"] if isinstance(r["rejected"], dict) else r["rejected"]
    with pytest.raises(DataError, match=r"round-trip2\.jsonl line 6 .*field 'rejected' is a serialized message "
                                        r"object .*not the response text"):
        load_benchmark(write_jsonl(tmp_path / "round-trip2.jsonl", rows))


def test_stringified_response_in_built_data_is_an_error():
    bench = make_tiny_benchmark(n_users=2)
    pairs = list(bench.pairs)
    pairs[4] = replace(pairs[4], rejected=json.dumps({"role": "model", "content": pairs[4].rejected}))
    with pytest.raises(DataError, match=r"pair #4 \(pair_id='user0-p4'\): field 'rejected' is a serialized message"):
        make_benchmark(pairs, None, name="tiny", sources=[{"id": "t"}])


@pytest.mark.parametrize("context,match", [
    ("What is 2+2?", r"field 'context' is a string, not a list"),
    ('[{"role": "user", "content": "What is 2+2?"}]', r"field 'context' is a string holding a serialized list of 1"),
    ([{"role": "user", "content": "hi"}, "{'role': 'assistant', 'content': 'hello'}"],
     r"field context\[1\] is a string \(a serialized message object with role 'assistant'\)"),
])
def test_string_contexts_are_errors_in_local_data(tmp_path, context, match):
    rows = [r for s in SPLITS for r in _rows(s)]
    rows[0]["context"] = context
    with pytest.raises(DataError, match=r"ctx\.jsonl line 1: " + match):
        load_benchmark(write_jsonl(tmp_path / "ctx.jsonl", rows))


def test_different_roles_are_an_error(tmp_path):
    rows = [r for s in SPLITS for r in _rows(s)]
    rows[7]["rejected"] = {"role": "user", "content": "I am not a response."}
    with pytest.raises(DataError, match=r"line 8: fields 'chosen' and 'rejected' have different roles "
                                        r"\('assistant' and 'user'\)"):
        load_benchmark(write_jsonl(tmp_path / "roles.jsonl", rows))


def test_official_layout_counts_serialized_rejected_and_audit_reads_it(tmp_path, capsys):
    """The LoRe#8 accident in an official release: every rejected serialized. The benchmark loads
    (counted), and the audit shows the structure gives every label away."""
    def serialize(split: str, rows: list[dict]) -> None:
        for r in rows:
            r["rejected"] = repr(r["rejected"])

    copy = hub_copy(tmp_path, REPO, edit=serialize)
    bench = load_benchmark(copy)
    n = sum(len(_rows(s)) for s in SPLITS)
    assert bench.manifest.warnings["response_shape_mismatch"] == n
    assert bench.manifest.warnings["serialized_message"] == n
    out = tmp_path / "audit.json"
    assert main(["data", "audit", "--dataset", str(copy), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    block = report["datasets"]["chatbot_arena"]
    assert report["directions"]["response_serialized"] == -1  # learned from train/val: serialized = rejected
    assert block["signals"]["response_serialized"]["share"] == 1.0
    assert block["structure_only_accuracy"] == 1.0


def test_stringified_message_in_raw_prism_names_the_record(tmp_path):
    from personalrewardbench.data import build_benchmark
    from tests.data.helpers import PRISM_DIR

    rows = read_jsonl(PRISM_DIR / "conversations.jsonl")
    entry = rows[1]["conversation_history"][2]  # c1002, turn 0, within_turn_id 1: "No, never." (rated 20)
    assert entry["content"] == "No, never."
    entry["content"] = "{'role': 'model', 'content': 'No, never.'}"
    d = tmp_path / "prism"
    write_jsonl(d / "conversations.jsonl", rows)
    # default construction pairs c1002 as 0>3 and 2>1 (see test_raw_builders): the entry is 2>1's rejected
    with pytest.raises(DataError, match=r"conversations\.jsonl line 2 \(pair_id='prism:c1002:t0:2>1'\): field "
                                        r"'rejected' is a serialized message object with role 'model'"):
        build_benchmark("prism_raw", input=d, use_cache=False)
