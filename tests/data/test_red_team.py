"""Red-team inputs from a careless data provider, through every reader of the data layer.

Each test names an input that got through on main (a traceback, a malformed row accepted
silently, an uncounted repair, or a label leak nothing reports) and the behaviour it should
have. Expected values are worked out by hand from the fixtures (documented next to each).
"""

from __future__ import annotations

import gzip
import json
import shutil
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from personalrewardbench.cli import main
from personalrewardbench.data import DataError, build_benchmark, load_benchmark
from personalrewardbench.data.store import save_benchmark
from personalrewardbench.data.text import normalize_text
from tests.data.helpers import ARENA_DIR, PRISM_DIR, PUBLISHED_DIR, hub_copy, read_jsonl, write_jsonl

REPO = "prism_personalized_0125"
SPLITS = ("train", "validation", "test")
SUMMARIZE = Path(__file__).resolve().parents[3] / "shared" / "data" / "summarize-from-feedback"


def _rows() -> list[dict[str, Any]]:
    """The 12 published-schema PRISM fixture rows: 4 train, 3 validation, 5 test; row 7 (line 8) is the
    first test row, user101's p0004."""
    return [r for s in SPLITS for r in read_jsonl(PUBLISHED_DIR / REPO / f"{s}.jsonl")]


def _lines(rows: list[dict[str, Any]]) -> list[bytes]:
    return [json.dumps(r, ensure_ascii=False).encode() for r in rows]


def _load_error(path: Path) -> str:
    with pytest.raises(DataError) as e:
        load_benchmark(path)
    return str(e.value)


# --- bytes -----------------------------------------------------------------------------------------


def test_integer_literal_over_the_int_conversion_limit_is_a_named_error(tmp_path, capsys):
    """Python refuses int literals over 4300 digits with ValueError (not JSONDecodeError): it escaped
    as a traceback from every command."""
    lines = _lines(_rows())
    lines[7] = lines[7].replace(b'"turns": 1', b'"turns": 1' + b"0" * 5000)
    p = tmp_path / "pairs.jsonl"
    p.write_bytes(b"\n".join(lines) + b"\n")
    assert "pairs.jsonl line 8" in _load_error(p)
    arr = tmp_path / "pairs.json"
    arr.write_bytes(b"[" + b",".join(lines) + b"]")
    assert "pairs.json" in _load_error(arr)
    assert main(["data", "validate", "--dataset", str(p)]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_duplicate_keys_with_different_values_are_an_error(tmp_path):
    """`"split": "test", "split": "train"` in one object: json keeps the last silently."""
    lines = _lines(_rows())
    lines[7] = lines[7].replace(b'"split": "test"', b'"split": "test", "split": "train"')
    p = tmp_path / "pairs.jsonl"
    p.write_bytes(b"\n".join(lines) + b"\n")
    msg = _load_error(p)
    assert "pairs.jsonl line 8" in msg and "'split'" in msg
    # the same key twice with the same value is not ambiguous: loads as before
    lines = _lines(_rows())
    lines[7] = lines[7].replace(b'"split": "test"', b'"split": "test", "split": "test"')
    p.write_bytes(b"\n".join(lines) + b"\n")
    assert len(load_benchmark(p).pairs) == 12


def test_parquet_with_a_duplicated_column_is_an_error(tmp_path):
    """Two `split` columns: `to_pylist` keeps the last silently (local parquet and hub copy)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pa.Table.from_pylist(_rows())
    t = t.append_column("split", pa.array(["train"] * t.num_rows))
    p = tmp_path / "pairs.parquet"
    pq.write_table(t, p)
    msg = _load_error(p)
    assert "pairs.parquet" in msg and "'split'" in msg

    copy = hub_copy(tmp_path, REPO)
    test_file = copy / "data" / "test-00000-of-00001.parquet"
    t = pq.read_table(test_file)
    pq.write_table(t.append_column("split", pa.array(["train"] * t.num_rows)), test_file)
    msg = _load_error(copy)
    assert "test-00000-of-00001.parquet" in msg and "'split'" in msg


def test_compressed_file_and_utf16_without_bom_are_named(tmp_path):
    """A gzip file named .jsonl and a UTF-16 file without a byte-order mark were reported as
    'invalid JSON ... Fix or remove that line', which is not the fix."""
    body = b"\n".join(_lines(_rows())) + b"\n"
    gz = tmp_path / "pairs.jsonl"
    gz.write_bytes(gzip.compress(body))
    assert "gzip" in _load_error(gz)
    u16 = tmp_path / "u16" / "pairs.jsonl"
    u16.parent.mkdir()
    u16.write_bytes(body.decode().encode("utf-16-le"))
    assert "UTF-16" in _load_error(u16)


def test_extra_data_on_the_last_line_is_not_called_truncated(tmp_path):
    """A file with CR-only line ends is one line holding 12 objects: json says 'Extra data'. It is
    not a truncated download, which is what the message claimed."""
    p = tmp_path / "pairs.jsonl"
    p.write_bytes(b"\r".join(_lines(_rows())) + b"\r")
    msg = _load_error(p)
    assert "Extra data" in msg and "cut short" not in msg and "truncated" not in msg


def test_invisible_format_characters_do_not_hide_repeats_or_empty_responses(tmp_path):
    """U+200B (zero-width space) and U+00AD (soft hyphen) are Unicode format characters (Cf):
    invisible, kept by NFKC, not whitespace. A response of only U+200B is empty, and a test pair
    that differs from a train pair by one of them repeats it."""
    assert normalize_text("a\u200bb\u00ad c\ufeff") == "ab c"
    rows = _rows()
    rows[7]["chosen"]["content"] = "\u200b"
    p = write_jsonl(tmp_path / "empty.jsonl", rows)
    assert "field 'chosen' is empty" in _load_error(p)
    rows = _rows()
    rep = json.loads(json.dumps(rows[0]))  # user101's train pair p0000, now also in test
    rep.update(split="test", conversation_id="again")
    rep["context"][0]["content"] += "\u200b"
    rep["chosen"]["content"] = rep["chosen"]["content"].replace("answer", "an\u00adswer")
    p = write_jsonl(tmp_path / "repeat.jsonl", [*rows, rep])
    assert "leakage for user 'user101'" in _load_error(p)


# --- shapes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"101.0", b"NaN", b"-Infinity", b"true", b'["user101"]', b'{"id": "user101"}'])
def test_user_id_of_the_wrong_type_is_an_error(tmp_path, raw):
    """str() turned these into users '101.0', 'nan', '-inf', 'True', "['user101']"...: a float id
    (pandas turns an integer column with a missing value into floats) silently split one user."""
    lines = _lines(_rows())
    lines[7] = lines[7].replace(b'"user_id": "user101"', b'"user_id": ' + raw)
    p = tmp_path / "pairs.jsonl"
    p.write_bytes(b"\n".join(lines) + b"\n")
    msg = _load_error(p)
    assert "pairs.jsonl line 8" in msg and "user_id" in msg


def test_integer_user_ids_are_their_decimal_text(tmp_path):
    """1 and "1" are the same user (an id's text); integer ids are accepted."""
    rows = _rows()
    for i, r in enumerate(rows):
        r["user_id"] = 1 if i % 2 else "1"
    bench = load_benchmark(write_jsonl(tmp_path / "pairs.jsonl", rows))
    assert bench.user_ids() == ["1"]


def test_user_ids_differing_only_by_normalization(tmp_path):
    """'user101 ' (trailing space) and the decomposed 'use\u0301r999' split a user in two without a word;
    a test pair filed under the variant id even escaped the leakage check. Local data: an error
    naming both ids. Official hub copy: loads, counted: 2 variant ids (one per user), and the
    repeated pair counted as a test pair repeating history."""
    rows = _rows()
    rows[7]["user_id"] = "user101 "  # user101's first test row
    p = write_jsonl(tmp_path / "pairs.jsonl", rows)
    msg = _load_error(p)
    assert "'user101 '" in msg and "'user101'" in msg

    def edit(split: str, rs: list[dict]) -> None:
        for r in rs:
            if r["user_id"] == "user999" and split == "test":
                r["user_id"] = unicodedata.normalize("NFD", "us\u00e9r999")
            elif r["user_id"] == "user999":
                r["user_id"] = "us\u00e9r999"
        if split == "test":
            rep = json.loads(json.dumps(read_jsonl(PUBLISHED_DIR / REPO / "train.jsonl")[0]))
            rep.update(split="test", user_id="user101 ", conversation_id="again")
            rs.append(rep)

    bench = load_benchmark(hub_copy(tmp_path, REPO, edit=edit))
    assert bench.manifest.official
    assert bench.manifest.warnings["user_id_variants"] == 2
    assert bench.manifest.warnings["test_repeats_history"] == 1


def test_split_values_that_needed_repair_are_counted(tmp_path):
    """' test' and 'Test' were read as test without a count (the reference loader, which selects
    split == 'test', would drop those rows). 5 test rows edited -> 5 counted; they still load."""
    rows = _rows()
    for i, r in enumerate(rows[7:]):
        r["split"] = " test" if i % 2 else "Test"
    bench = load_benchmark(write_jsonl(tmp_path / "pairs.jsonl", rows))
    assert bench.manifest.counts["splits"]["test"]["pairs"] == 5
    assert bench.manifest.warnings["split_value_normalized"] == 5


@pytest.mark.parametrize("field,value", [("flip", "False"), ("flip", 0)])
def test_flip_that_is_not_a_boolean_is_an_error(tmp_path, field, value):
    """flip "False" was kept in meta, ignored by the judge prompts (a seeded coin instead)."""
    rows = _rows()
    rows[7][field] = value
    msg = _load_error(write_jsonl(tmp_path / "pairs.jsonl", rows))
    assert "pairs.jsonl line 8" in msg and "'flip'" in msg


def test_response_content_of_the_wrong_type_names_the_content_field(tmp_path):
    """An OpenAI-style list of content parts was reported as "field 'chosen' ... got dict"."""
    rows = _rows()
    rows[7]["chosen"]["content"] = [{"type": "text", "text": "Preferred answer 4."}]
    msg = _load_error(write_jsonl(tmp_path / "pairs.jsonl", rows))
    assert "chosen.content" in msg and "list" in msg


def test_hub_copy_with_an_extra_file_is_named_not_silently_unofficial(tmp_path):
    """data/extra-00000-of-00001.parquet next to the three hub splits: its rows were added and the
    copy silently lost `official` (its quirks then refused)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    copy = hub_copy(tmp_path, REPO)
    pq.write_table(pa.Table.from_pylist(read_jsonl(PUBLISHED_DIR / REPO / "test.jsonl")[:1]),
                   copy / "data" / "extra-00000-of-00001.parquet")
    assert "extra-00000-of-00001.parquet" in _load_error(copy)


def _edited_manifest(tmp_path: Path, name: str, change: dict[str, Any]) -> Path:
    bench = load_benchmark(write_jsonl(tmp_path / "pairs.jsonl", _rows()))
    out = save_benchmark(bench, tmp_path / name)
    m = json.loads((out / "manifest.json").read_text())
    m.update(change)
    (out / "manifest.json").write_text(json.dumps(m))
    return out


def test_built_folder_with_counts_missing_is_read_with_counts_from_its_pairs(tmp_path, capsys):
    """counts {} made `prb data stats/validate/export` end in KeyError tracebacks. The counts are
    derived from pairs.jsonl (which the hash covers): 2 users, 12 pairs, 5 of them test."""
    out = _edited_manifest(tmp_path, "counts", {"counts": {}})
    c = load_benchmark(out).manifest.counts
    assert (c["users"], c["pairs"], c["splits"]["test"]["pairs"]) == (2, 12, 5)
    for cmd in ("stats", "validate", "export"):
        extra = ["--out", str(tmp_path / "x")] if cmd == "export" else []
        assert main(["data", cmd, "--dataset", str(out), *extra]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_built_folder_official_flag_must_be_a_boolean(tmp_path, capsys):
    """official "false" (a string) was read as True, turning the folder's errors into warnings."""
    out = _edited_manifest(tmp_path, "official", {"official": "false"})
    assert "official" in _load_error(out)
    assert main(["data", "stats", "--dataset", str(out)]) == 2
    assert "Traceback" not in capsys.readouterr().err


# --- raw sources -----------------------------------------------------------------------------------


def _summarize_copy(tmp_path: Path, edit: Any) -> Path:
    rows = read_jsonl(SUMMARIZE / "comparisons" / "batch18.json")[:60]
    edit(rows)
    out = tmp_path / "tldr" / "comparisons"
    out.mkdir(parents=True)
    (out / "batch18.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out.parent


@pytest.mark.skipif(not SUMMARIZE.is_dir(), reason="summarize-from-feedback sample not present")
@pytest.mark.parametrize("edit,field", [
    (lambda r: r[0].update(choice=1.0), "choice"),  # TypeError traceback: list indices must be integers
    (lambda r: r[0].update(choice=0.0), "choice"),
    (lambda r: r[0].update(worker=5.5), "worker"),
    (lambda r: r[0]["info"].update(post=["a post"]), "post"),  # rendered as "['a post']"
    (lambda r: r[0]["info"].update(title=5), "title"),
    (lambda r: r[0]["info"].update(subreddit={"name": "AskReddit"}), "subreddit"),
])
def test_summarize_fields_of_the_wrong_type_are_named_errors(tmp_path, edit, field):
    with pytest.raises(DataError, match=rf"batch18\.json line 1.*{field}"):
        build_benchmark("summarize_feedback", input=_summarize_copy(tmp_path, edit), use_cache=False)


def _arena_copy(tmp_path: Path, edit: Any) -> Path:
    rows = read_jsonl(ARENA_DIR / "train.jsonl")
    edit(rows)
    return write_jsonl(tmp_path / "arena" / "train.jsonl", rows).parent


@pytest.mark.parametrize("edit,field", [
    (lambda r: r[0].update(anony="False"), "anony"),  # truthy: kept by --anony-only
    (lambda r: r[0].update(judge=float("nan")), "judge"),  # user 'nan'
    (lambda r: r[0].update(judge=["arena_user_1"]), "judge"),
])
def test_arena_fields_of_the_wrong_type_are_named_errors(tmp_path, edit, field):
    with pytest.raises(DataError, match=rf"train\.jsonl line 1.*{field}"):
        build_benchmark("chatbot_arena_raw", input=_arena_copy(tmp_path, edit), use_cache=False)


def _prism_copy(tmp_path: Path, edit: Any = None, edit_survey: Any = None) -> Path:
    out = tmp_path / "prism"
    out.mkdir()
    conv, survey = read_jsonl(PRISM_DIR / "conversations.jsonl"), read_jsonl(PRISM_DIR / "survey.jsonl")
    if edit:
        edit(conv)
    if edit_survey:
        edit_survey(survey)
    write_jsonl(out / "conversations.jsonl", conv)
    write_jsonl(out / "survey.jsonl", survey)
    return out


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_prism_score_that_is_not_finite_is_an_error(tmp_path, value):
    """NaN ratings compared False with everything: the turn silently made no pair (counted only as
    'responses_left_unpaired'); an infinite one beat every rating."""
    def edit(conv: list[dict]) -> None:
        conv[0]["conversation_history"][1]["score"] = value

    with pytest.raises(DataError, match=r"conversations\.jsonl line 1.*conversation_history\[1\]\.score"):
        build_benchmark("prism_raw", input=_prism_copy(tmp_path, edit), use_cache=False)


def test_prism_survey_join_misses_and_duplicates_are_counted(tmp_path):
    """Kept users: user101 and user202 (user303 has one conversation, below 5 pairs); the survey
    has user101 and user303. With a trailing space on every survey id neither kept user has a
    profile: 2 users missing (1 before the edit, user202), and nothing counted them. A second survey
    row for one user silently replaced the first: 1 duplicate."""
    def spaces(survey: list[dict]) -> None:
        for r in survey:
            r["user_id"] += " "

    bench = build_benchmark("prism_raw", input=_prism_copy(tmp_path, edit_survey=spaces), use_cache=False)
    assert all(v is None for v in bench.profiles.values())
    assert bench.manifest.warnings["users_missing_from_profiles"] == 2
    shutil.rmtree(tmp_path / "prism")

    def dup(survey: list[dict]) -> None:
        survey.append(dict(survey[0], age="65+ years old"))

    bench = build_benchmark("prism_raw", input=_prism_copy(tmp_path, edit_survey=dup), use_cache=False)
    assert bench.manifest.warnings["survey_duplicate_user"] == 1
    assert bench.manifest.warnings["users_missing_from_profiles"] == 1


# --- leaks ---------------------------------------------------------------------------------------


WORDS = "apple river stone light quick slow green paper window music garden caf\u00e9 na\u00efve r\u00e9sum\u00e9".split()


def _random_rows(artifact: Any, users: int = 4, per_user: int = 12) -> list[dict[str, Any]]:
    """Published-schema rows with random texts (unique) and no label in their content: per user 4
    train, 2 val, 6 test pairs; ``artifact(chosen, rejected)`` marks one side only."""
    import random

    rng, seen = random.Random(3), set()

    def text() -> str:
        while True:
            t = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 12))).capitalize() + "."
            if t not in seen:
                seen.add(t)
                return t

    rows = []
    for u in range(users):
        for k in range(per_user):
            c, r = artifact(text(), text())
            rows.append({"user_id": f"u{u}", "conversation_id": f"c{u}-{k}",
                         "context": [{"role": "user", "content": text()}],
                         "chosen": {"role": "model", "content": c}, "rejected": {"role": "model", "content": r},
                         "split": "train" if k < 4 else "val" if k < 6 else "test",
                         "flip": bool(k % 2), "turns": 1, "type": "unguided"})
    return rows


# name -> (mark one side, a one-line reader of the mark in a raw response text)
ARTIFACTS = {
    "trailing whitespace on chosen": (lambda c, r: (c + " ", r), lambda t: t.endswith(" ")),
    "chosen decomposed (NFD), rejected composed": (
        lambda c, r: (unicodedata.normalize("NFD", "Caf\u00e9 " + c), "Caf\u00e9 " + r),
        lambda t: not unicodedata.is_normalized("NFC", t)),
    "'Assistant:' prefix on chosen": (lambda c, r: ("Assistant: " + c, r), lambda t: t.startswith("Assistant:")),
    "zero-width space on chosen": (lambda c, r: (c + "\u200b", r), lambda t: "\u200b" in t),
}


@pytest.mark.parametrize("name", list(ARTIFACTS))
def test_format_artifact_on_one_side_is_audited_and_read_by_leak_probe(tmp_path, name):
    """Every chosen response carries the artifact and no rejected one does: a one-line method reads
    every label (100%), while `prb data audit` reported 0% affected and `leak-probe` flipped coins.
    By hand: the artifact's direction is learned from the 6 train/val pairs per user (all +1), so
    all 24 test pairs are decided, all correctly: affected 24/24, structure-only accuracy 1.0;
    leak-probe answers all 48 queries from the structure, all right."""
    from personalrewardbench.data.audit import audit_benchmark
    from personalrewardbench.methods import MethodEnv, load_method
    from personalrewardbench.query_keys import make_queries

    mark, reader = ARTIFACTS[name]
    bench = load_benchmark(write_jsonl(tmp_path / "pairs.jsonl", _random_rows(mark)))
    test = bench.pairs_of("test")
    assert len(test) == 24
    queries, keys = make_queries(test, 0)
    # the leak is real: a method that reads the mark off the first response gets every query right
    assert all(reader(q.first) == keys[q.query_id].chosen_first for q in queries)

    block = audit_benchmark(bench)["datasets"]["pairs"]
    assert block["affected_pairs"] == 24 and block["structure_only_accuracy"] == 1.0

    probe = load_method("leak-probe")
    probe.setup(MethodEnv(seed=0, show_progress=False))
    probe.fit(bench.histories())
    probs = probe.predict(queries)
    assert all((p > 0.5) == keys[q.query_id].chosen_first for q, p in zip(queries, probs, strict=True))
    assert probe.usage()["queries_decided_by_structure"] == 48


def test_response_already_in_its_own_context_is_audited_and_read_by_leak_probe(tmp_path):
    """Each pair's context already holds its chosen response as an earlier assistant turn (a builder
    that put the current turn's pick into the conversation so far). `response_in_context` looked
    only at *other* pairs' contexts, so this leak went unreported. By hand: all 24 test pairs
    decided by it, all correctly (its direction learned from the train/val pairs, all +1)."""
    from personalrewardbench.data.audit import audit_benchmark
    from personalrewardbench.methods import MethodEnv, load_method
    from personalrewardbench.query_keys import make_queries

    rows = _random_rows(lambda c, r: (c, r))
    for r in rows:
        r["context"] += [{"role": "assistant", "content": r["chosen"]["content"]}, {"role": "user", "content": "And?"}]
    bench = load_benchmark(write_jsonl(tmp_path / "pairs.jsonl", rows))
    block = audit_benchmark(bench)["datasets"]["pairs"]
    assert block["affected_pairs"] == 24 and block["structure_only_accuracy"] == 1.0
    assert block["signals"]["response_in_context"]["pairs"] == 24
    probe = load_method("leak-probe")
    probe.setup(MethodEnv(seed=0, show_progress=False))
    probe.fit(bench.histories())
    queries, keys = make_queries(bench.pairs_of("test"), 0)
    probs = probe.predict(queries)
    assert all((p > 0.5) == keys[q.query_id].chosen_first for q, p in zip(queries, probs, strict=True))


def test_raw_build_names_user_ids_that_differ_only_by_normalization(tmp_path):
    """Every second battle of arena_user_1 judged by 'arena_user_1 ': both halves fell under the
    5-pair minimum and vanished, counted only as users below the minimum."""
    def spaces(rows: list[dict]) -> None:
        mine = [r for r in rows if r["judge"] == "arena_user_1"]
        for r in mine[::2]:
            r["judge"] = "arena_user_1 "

    with pytest.raises(DataError, match=r"'arena_user_1', 'arena_user_1 ' differ only by whitespace"):
        build_benchmark("chatbot_arena_raw", input=_arena_copy(tmp_path, spaces), use_cache=False)


def test_published_schema_without_split_column_names_the_missing_field(tmp_path):
    """Rows with user_id, context, chosen and rejected but no split were 'records of unknown kind'."""
    rows = _rows()
    for r in rows:
        del r["split"]
    msg = _load_error(write_jsonl(tmp_path / "pairs.jsonl", rows))
    assert "['split']" in msg
