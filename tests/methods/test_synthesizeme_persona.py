"""SynthesizeMe's persona writer: the program read at run time, its context rule, and personas that are not."""

from __future__ import annotations

import importlib.util
import json

import pytest

from personalrewardbench.methods import MethodEnv, MethodError, load_method
from tests.methods.synthesizeme_helpers import (
    RecordingLLM,
    always,
    classify,
    fit,
    history,
    install_fake_reference,
    is_writer,
    program_json,
    reply,
)


def _stats():
    import importlib

    pkg = type(load_method("synthesizeme", {"persona_program": "builtin"})).__module__.rsplit(".", 1)[0]
    return importlib.import_module(f"{pkg}.stats")


def test_reference_program_is_read_from_the_installed_package_at_run_time(tmp_path, monkeypatch):
    install_fake_reference(tmp_path, monkeypatch, program_json(n_examples=3))
    method = load_method("synthesizeme")
    assert method.settings.persona_program == "reference"
    program = method.program()
    assert program.source == "synthesizeme==0.0.11a1:prompts/llama70b.json"
    assert [e.persona for e in program.examples] == [f"example persona {i}" for i in range(3)]
    assert program.examples[1].reasoning == "example reasoning 1"
    assert program.instruction == "Write a persona from these judgments (test program)."


def test_a_missing_reference_package_is_one_clear_error_before_any_call(tmp_path, monkeypatch):
    import importlib.metadata as md

    def missing(name):
        raise md.PackageNotFoundError(name)

    monkeypatch.setattr(md, "distribution", missing)
    llm = RecordingLLM(always("First"), tmp_path / "cache")
    with pytest.raises(MethodError, match=r"pip install --no-deps synthesizeme==0.0.11a1.*persona_program=builtin"):
        load_method("synthesizeme").setup(MethodEnv(seed=0, llm=llm, show_progress=False))
    assert llm.asked == []


def test_a_program_file_path_and_a_bad_file(tmp_path):
    good = tmp_path / "theta.json"
    good.write_text(json.dumps(program_json(n_examples=1)))
    assert len(load_method("synthesizeme", {"persona_program": str(good)}).program().examples) == 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"synthesize.predict": {"signature": {"instructions": "x", "fields": []}}}))
    with pytest.raises(MethodError, match=r"bad.json.*fields"):
        load_method("synthesizeme", {"persona_program": str(bad)}).program()
    with pytest.raises(MethodError, match="no such file"):
        load_method("synthesizeme", {"persona_program": str(tmp_path / "nope.json")}).program()


@pytest.mark.skipif(importlib.util.find_spec("synthesizeme") is None, reason="the reference package is not installed")
def test_the_real_reference_theta_is_read_with_all_its_worked_examples():
    import importlib.metadata as md

    dist = md.distribution("synthesizeme")
    path = next(dist.locate_file(f) for f in dist.files if str(f).endswith("prompts/llama70b.json"))
    raw = json.loads(open(path, encoding="utf-8").read())
    (pred,) = [v for v in raw.values() if isinstance(v, dict) and "signature" in v]
    program = load_method("synthesizeme").program()
    assert len(program.examples) == len(pred["demos"]) == 6
    assert program.instruction == pred["signature"]["instructions"].strip()
    assert [e.persona for e in program.examples] == [d["synthesized_persona"] for d in pred["demos"]]


def test_writer_prompt_has_the_worked_examples_then_the_users_judgments(tmp_path, monkeypatch):
    install_fake_reference(tmp_path, monkeypatch, program_json(n_examples=2))
    llm = RecordingLLM(always("First"), tmp_path / "cache")
    fit(llm, [history()], num_candidates=0)
    (chat, params), = classify(llm.asked)["writer"]
    assert [m.role for m in chat] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert chat[0].content.startswith("Write a persona from these judgments (test program).")
    assert "example judgments 0" in chat[1].content and "Persona: example persona 0" in chat[2].content
    assert "example reasoning 1" in chat[4].content
    assert params.max_tokens == 8192 and params.temperature == 0.0


def test_program_examples_are_dropped_before_the_users_judgments_and_counted(tmp_path):
    prog = tmp_path / "theta.json"
    prog.write_text(json.dumps(program_json(n_examples=3, words=120)))
    llm = RecordingLLM(always("First"), tmp_path / "cache", context_length=600)
    method = fit(llm, [history()], num_candidates=0, persona_program=str(prog), max_persona_tokens=64,
                 max_judge_tokens=64)
    (chat, _), = classify(llm.asked)["writer"]
    # ScriptedLLM counts words: each worked example is ~130 words, the user's 4 judgments ~80;
    # budget 600 - 64 - 8 = 528 keeps the judgments and the first examples, the last one goes first.
    kept = [m.content for m in chat if m.role == "assistant"]
    per_user = method.usage()["per_user"]["u"]
    assert per_user["persona_examples_dropped"] == 0
    assert per_user["persona_program_examples_dropped"] == 3 - len(kept) >= 1
    assert [k.split("Persona: ")[1] for k in kept] == [f"example persona {i}" for i in range(len(kept))]
    assert llm.count_tokens(chat) <= 600 - 64 - 8


def test_when_nothing_else_fits_the_users_judgments_go_last_first(tmp_path):
    prog = tmp_path / "theta.json"
    prog.write_text(json.dumps(program_json(n_examples=2, words=300)))
    llm = RecordingLLM(always("First"), tmp_path / "cache", context_length=160)
    method = fit(llm, [history()], num_candidates=0, persona_program=str(prog), max_persona_tokens=16,
                 max_judge_tokens=16)
    (chat,) = [c for c, _ in llm.asked if is_writer(c)]
    per_user = method.usage()["per_user"]["u"]
    assert per_user["persona_program_examples_dropped"] == 2 and per_user["persona_examples_dropped"] >= 1
    assert "left out to fit the context window" in chat[-1].content


def _writer_says(text):
    def fn(chat, params):
        return text if is_writer(chat) else reply("First")
    return fn


@pytest.mark.parametrize("text,cap,persona,flags", [
    # cut by the cap before its label: reasoning is never taken for the persona
    ("Reasoning: " + " ".join(f"guess{i}" for i in range(60)), 40, "", ["empty", "capped"]),
    # a label present but the reply was cut: kept, flagged
    ("Reasoning: short.\nPersona: " + " ".join(f"trait{i}" for i in range(60)), 30, None, ["capped"]),
    ("Reasoning: r.\nPersona: The person truly preferred: First", 8192, "The person truly preferred: First",
     ["echo"]),
    ("Reasoning: r.\nPersona: " + "likes short answers " * 12, 8192, None, ["repetitive"]),
    ("Reasoning: r.\nPersona: A patient teacher who values worked examples.", 8192,
     "A patient teacher who values worked examples.", []),
])
def test_personas_that_are_not_personas_are_counted(tmp_path, text, cap, persona, flags):
    llm = RecordingLLM(_writer_says(text), tmp_path / "cache")
    method = fit(llm, [history()], num_candidates=0, use_demos=False, persona_program="builtin",
                 max_persona_tokens=cap)
    got = method.models["u"].persona
    if persona is not None:
        assert got == persona
    usage = method.usage()
    assert usage["per_user"]["u"]["persona_flags"] == flags
    assert usage["personas_not_personas"]["personas_flagged"] == int(bool(flags))
    for f in flags:
        assert usage["personas_not_personas"][f"persona_{f}"] == 1
    assert ("Persona check: " + (", ".join(flags) or "ok")) in method.artifacts()["u"]


def test_persona_flags_rule():
    flags = _stats().persona_flags
    assert flags("", capped=False) == ["empty"]
    assert flags("Second.", capped=False) == ["echo"]
    assert flags("Preference: [[First]] because", capped=True) == ["capped", "echo"]
    words = " ".join(f"w{i}" for i in range(40))
    assert flags(words, capped=False) == []
    assert flags("a b c d " * 10, capped=False) == ["repetitive"]
