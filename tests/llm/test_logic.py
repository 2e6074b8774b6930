"""Pure logic: context fitting, choice variants, answer parsing, option plumbing."""

from __future__ import annotations

import argparse
import math

import pytest

from personalrewardbench.data.schema import Message
from personalrewardbench.llm import LLMError, add_llm_arguments, llm_from_args, make_llm
from personalrewardbench.llm.choices import choice_variants, logsumexp, match_top_tokens, variant_token_ids
from personalrewardbench.llm.openai_backend import first_named_choice
from personalrewardbench.llm.truncate import CUT_MARKER, fit_chat


def words(chat) -> int:
    return sum(len(m.content.split()) for m in chat)


def test_fit_chat_unchanged_when_it_fits():
    chat = (Message("system", "s"), Message("user", "u v"))
    assert fit_chat(chat, words, 3) == (chat, False)


def test_fit_chat_drops_oldest_middle_messages_first():
    chat = [Message("system", "sys"), Message("user", "one two three"), Message("assistant", "four five"),
            Message("user", "six"), Message("assistant", "seven"), Message("user", "final a b")]
    out, cut = fit_chat(chat, words, 7)
    assert cut
    assert out == (chat[0], chat[3], chat[4], chat[5])


def test_fit_chat_left_truncates_final_message_as_last_resort():
    final = Message("user", " ".join(f"w{i}" for i in range(50)))
    out, cut = fit_chat([Message("system", "keep me"), Message("user", "old"), final], words, 12)
    assert cut and out[0].content == "keep me" and len(out) == 2
    assert out[1].content.startswith(CUT_MARKER.strip()) and out[1].content.endswith("w49")
    assert words(out) <= 12


def test_choice_variants_keep_case_distinct_choices_apart():
    v = choice_variants(["A", "a"])
    assert "A" in v["A"] and " A" in v["A"] and "a" not in v["A"]
    assert "a" in v["a"] and "A" not in v["a"]
    assert set(choice_variants(["First", "Second"])["First"]) >= {"First", " First", "first", " first", "FIRST"}


def test_variant_token_ids_are_prefix_free():
    vocab = {"A": [1], " A": [2], "a": [3], " a": [4], "AB": [1, 5], " AB": [2, 5], "ab": [3, 6], " ab": [4, 6],
             "Ab": [1, 6], " Ab": [2, 6], "B": [7], " B": [8], "b": [9], " b": [10]}
    out = variant_token_ids(["A", "AB", "B"], lambda s: vocab[s])
    for seqs in out.values():
        assert seqs and not any(a != b and b[:len(a)] == a for a in seqs for b in seqs)
    assert set(out["A"]) == {(1,), (2,), (3,), (4,)}
    assert set(out["B"]) == {(7,), (8,), (9,), (10,)}


def test_logsumexp_and_top_token_matching():
    assert logsumexp([math.log(0.2), math.log(0.3)]) == pytest.approx(math.log(0.5))
    assert logsumexp([]) == -math.inf
    top = [("A", math.log(0.5)), (" a", math.log(0.1)), ("B", math.log(0.2)), ("The", math.log(0.1))]
    got = match_top_tokens(["A", "B"], top)
    assert got["A"] == pytest.approx(math.log(0.6)) and got["B"] == pytest.approx(math.log(0.2))
    first = match_top_tokens(["First", "Second"], [(" First", -0.5), ("Sec", -2.0), ("F", -3.0), ("first", -4.0)])
    assert first["First"] == pytest.approx(logsumexp([-0.5, -4.0])) and first["Second"] == -2.0


def test_first_named_choice_parsing():
    assert first_named_choice("I pick B, not A.", ["A", "B"]) == "B"
    assert first_named_choice("Answer: second", ["First", "Second"]) == "Second"
    assert first_named_choice("Both are fine", ["A", "B"]) is None


def test_llm_arguments_round_trip(tmp_path):
    parser = argparse.ArgumentParser()
    add_llm_arguments(parser)
    args = parser.parse_args(["--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--no-cache",
                              "--llm-batch-size", "4"])
    assert args.backend == "openai" and args.no_cache and args.llm_batch_size == 4
    with pytest.raises(LLMError, match="cannot reach"):  # port 9 (discard) on loopback: nothing listens
        llm_from_args(args)


def test_unknown_backend_and_missing_files(tmp_path):
    with pytest.raises(LLMError, match="unknown LLM backend"):
        make_llm("nope")
    with pytest.raises(LLMError, match="model file not found"):
        make_llm("transformers", str(tmp_path / "missing.gguf"), use_cache=False)
    with pytest.raises(LLMError, match="model path not found"):
        make_llm("transformers", str(tmp_path / "no-folder"), use_cache=False)
    with pytest.raises(LLMError, match="no-such-org/no-such-model.*not in the local Hugging Face cache.*--model DIR"):
        make_llm("transformers", "no-such-org/no-such-model", use_cache=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(LLMError, match="no model files"):
        make_llm("transformers", str(tmp_path / "empty"), cache_dir=str(tmp_path / "c"))


def test_openai_needs_url(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(LLMError, match="needs a server URL"):
        make_llm("openai", "m", use_cache=False)
