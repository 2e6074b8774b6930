"""SynthesizeMe's defaults pinned against the reference as it runs (synthesizeme 0.0.11a1, DSPy 2.6).

A scripted LLM records every prompt. Expected values come from the reference's
protocol (../shared/reference/synthesizeme-protocol.md; README "Protocol"): its
candidate draws are Python's ``random.Random(k)`` shuffles and ``randint`` sizes
and ``random.Random(0)`` samples, recomputed here with the standard library.
The reference's DSPy cache answers identical requests, so a candidate whose
prompts equal an earlier one's sends nothing: ``sent`` counts what reaches the model.
"""

from __future__ import annotations

import random

import pytest

from personalrewardbench.data.schema import Message, Query
from tests.methods.synthesizeme_helpers import (
    TRAIN_FLIPS,
    RecordingLLM,
    always,
    classify,
    demo_sensitive,
    demo_tags,
    fit,
    history,
    install_fake_reference,
    query_tag,
)

N_TRAIN = len(TRAIN_FLIPS)
GOLD = ["First" if f else "Second" for f in TRAIN_FLIPS]


@pytest.fixture
def reference_program(tmp_path, monkeypatch):
    """The default persona_program="reference", read from a fake installed package with 2 worked examples."""
    return install_fake_reference(tmp_path, monkeypatch)


def expected_candidates(traces: list[int], persona: bool) -> list[tuple[str, tuple[str, ...]]]:
    """(name, demo tags shown to the judge) per candidate, in scan order, as the reference runs."""
    cands = [("persona-only", ())] if persona else []
    cands.append(("labeled-only", ()))  # its 4 raw demos are dropped from the prompt
    cands.append(("unshuffled", tuple(f"t{i}" for i in traces)))
    for k in range(10):
        order = list(range(N_TRAIN))
        random.Random(k).shuffle(order)
        size = random.Random(k).randint(1, N_TRAIN)
        cands.append((f"shuffle-{k}", tuple(f"t{i}" for i in order if i in traces)[:size]))
    return cands


def predict(method, uid="u"):
    """Two test pairs, each asked in both orders (as the harness does)."""
    qs = []
    for i in range(2):
        ctx = (Message("user", f"question x{i} of {uid}"),)
        qs += [Query(f"q{i}a", uid, ctx, f"chosen x{i} CHOSEN", f"rejected x{i}"),
               Query(f"q{i}b", uid, ctx, f"rejected x{i}", f"chosen x{i} CHOSEN")]
    return method.predict(qs)


def _val_demo_sequence(requests) -> list[tuple[str, ...]]:
    return [demo_tags(chat) for chat, _ in requests]


def test_default_run_matches_the_reference_call_for_call(tmp_path, reference_program):
    llm = RecordingLLM(always("First"), tmp_path / "cache")
    method = fit(llm, [history()])
    asked, sent = classify(llm.asked), classify(llm.sent)
    traces = [i for i in range(N_TRAIN) if GOLD[i] == "First"]  # the always-First judge verifies these

    # Every call: temperature 0, reply cap 8,192 tokens (judge and persona writer).
    assert {(p.temperature, p.max_tokens) for _, p in llm.asked} == {(0.0, 8192)}

    # Bootstrap: the teacher is zero-shot, one request per train pair, in both phases.
    for key in ("train-plain", "train-persona"):
        assert sorted(query_tag(c) for c, _ in sent[key]) == [f"t{i}" for i in range(N_TRAIN)]
        assert all(demo_tags(c) == () for c, _ in asked[key])

    # Search 1: 12 candidates in the reference's order, each judging the 3 validation pairs once,
    # in their flip order; raw labeled demos never shown.
    cands1 = expected_candidates(traces, persona=False)
    assert len(cands1) == 12
    val1 = asked["val-plain"]
    assert [query_tag(c) for c, _ in val1] == ["v0", "v1", "v2"] * 12
    assert _val_demo_sequence(val1) == [d for _, d in cands1 for _ in range(3)]
    assert len(sent["val-plain"]) == 3 * len({d for _, d in cands1})  # repeats come from the cache
    seen: set = set()
    expected_calls = []
    for name, demos in cands1:  # (candidate, judgments asked, requests sent): 0 sent for a repeated prompt
        expected_calls.append([name, 3, 0 if demos in seen else 3])
        seen.add(demos)
    got = [[n, j, s] for n, _, j, s in method.usage()["per_user"]["u"]["search1_candidates"]]
    assert got == expected_calls
    # Ties (always 1 of 3 right) keep the first candidate: labeled-only, the zero-shot judge.
    assert method.stats.notes["u"]["search1_judgments_per_candidate"] == 3

    # Persona writer: one request; the 2 worked examples of the program, then labeled-only's 4 raw
    # demos (DSPy's LabeledFewShot: random.Random(0).sample of the train list), without reasoning.
    (writer, params), = asked["writer"]
    assert sum(m.role == "assistant" for m in writer) == 2
    body = writer[-1].content
    picked = random.Random(0).sample(range(N_TRAIN), 4)
    positions = [body.index(f"question t{i} of u") for i in picked]
    assert positions == sorted(positions) and body.count("### Judgment") == 4
    assert "Reasoning:" not in body
    assert [line.split(": ")[1] for line in body.splitlines() if line.startswith("The person truly preferred")] \
        == [GOLD[i] for i in picked]

    # Search 2: 13 candidates, persona-only first; labeled-only repeats its prompts (sends nothing).
    cands2 = expected_candidates(traces, persona=True)
    val2 = asked["val-persona"]
    assert len(val2) == 39 and _val_demo_sequence(val2) == [d for _, d in cands2 for _ in range(3)]
    assert len(sent["val-persona"]) == 3 * len({d for _, d in cands2})

    # Final prompt: persona-only (ties keep it): the persona, no demos.
    assert predict(method) == [1.0, 1.0, 1.0, 1.0]  # always First
    final = classify(llm.asked)["test-persona"]
    assert len(final) == 4 and all(demo_tags(c) == () for c, _ in final)
    usage = method.usage()
    assert usage["phases"]["search1"]["judgments"] == 36 and usage["phases"]["search2"]["judgments"] == 39
    assert usage["phases"]["search1"]["sent"] == len(sent["val-plain"])
    assert usage["persona_program"]["worked_examples"] == 2


def test_a_better_candidate_is_chosen_and_every_candidate_is_still_scored(tmp_path, reference_program):
    llm = RecordingLLM(demo_sensitive("First"), tmp_path / "cache")
    method = fit(llm, [history()])
    asked = classify(llm.asked)
    traces = [i for i in range(N_TRAIN) if GOLD[i] == "First"]
    # labeled-only (zero-shot) scores 1/3, unshuffled 3/3 and stops the scan; the reference still
    # scores the other 10 (it computes all candidates, then scans).
    assert len(asked["val-plain"]) == 36 and len(asked["val-persona"]) == 39
    art = method.artifacts()["u"]
    assert "Chosen candidate: unshuffled (validation accuracy 100.0%" in art
    # The persona writer reads unshuffled's demos: the 4 verified traces, in train order, with reasoning.
    (writer, _), = asked["writer"]
    body = writer[-1].content
    pos = [body.index(f"question t{i} of u") for i in traces]
    assert pos == sorted(pos) and body.count("Reasoning: a guess about the person.") == 4
    predict(method)
    final = classify(llm.asked)["test-persona"]
    assert {demo_tags(c) for c, _ in final} == {tuple(f"t{i}" for i in traces)}


def test_raw_fill_demos_are_dropped_from_judge_prompts_but_reach_the_persona_writer(tmp_path, reference_program):
    llm = RecordingLLM(demo_sensitive("Second"), tmp_path / "cache")
    fit(llm, [history()])
    asked = classify(llm.asked)
    traces = [i for i in range(N_TRAIN) if GOLD[i] == "Second"]  # t1, t4
    unshuffled = [c for c, _ in asked["val-plain"]][3:6]  # candidate 2 in scan order
    assert {demo_tags(c) for c in unshuffled} == {("t1", "t4")}  # 2 traces shown, 2 raw fill dropped
    (writer, _), = asked["writer"]
    body = writer[-1].content
    # fill: the unused train examples, shuffled with random.Random(0), sampled with another Random(0)
    pool = [i for i in range(N_TRAIN) if i not in traces]
    random.Random(0).shuffle(pool)
    fill = random.Random(0).sample(pool, 2)
    pos = [body.index(f"question t{i} of u") for i in [*traces, *fill]]
    assert pos == sorted(pos) and body.count("### Judgment") == 4
    assert body.count("Reasoning: ") == 2


def test_intended_variant_shows_labeled_demos_and_judges_validation_in_both_orders(tmp_path, reference_program):
    llm = RecordingLLM(always("First"), tmp_path / "cache")
    fit(llm, [history()], labeled_demos_in_prompts=True, validation_orders="both")
    asked = classify(llm.asked)
    teacher = random.Random(0).sample(range(N_TRAIN), 4)
    for chat, _ in asked["train-plain"]:
        q = int(query_tag(chat)[1:])
        assert demo_tags(chat) == tuple(f"t{i}" for i in teacher if i != q)
    val = asked["val-plain"]
    assert len(val) == 12 * 6  # both orders of 3 pairs
    assert demo_tags(val[0][0]) == tuple(f"t{i}" for i in teacher)  # labeled-only: 4 raw demos shown


def test_failed_judgments_send_one_request_as_the_references_cached_retries(tmp_path, reference_program):
    def fn(chat, params):
        return "Persona: someone." if "Now write the persona." in chat[-1].content else "I cannot tell."

    llm = RecordingLLM(fn, tmp_path / "cache")
    method = fit(llm, [history()], num_candidates=0)
    judge_asked = [r for r in llm.asked if "Now write" not in r[0][-1].content]
    assert len(judge_asked) == 6 + 2 * 3 + 6 + 3 * 3  # bootstrap, search1, bootstrap2, search2
    assert {p.temperature for _, p in llm.sent} == {0.0}
    assert len(llm.sent) == len({c for c, _ in llm.asked})  # nothing sent twice
    totals = method.usage()["totals"]
    assert totals["failed_fit_judgments"] == len(judge_asked) and totals.get("retries", 0) == 0


def test_resampled_retries_are_a_setting(tmp_path, reference_program):
    llm = RecordingLLM(lambda chat, p: "I cannot tell.", tmp_path / "cache")
    fit(llm, [history()], num_candidates=0, use_persona=False, retry_temperature=0.7)
    assert {p.temperature for _, p in llm.sent} == {0.0, 0.7}
    per_request = len(llm.sent) / len({c for c, _ in llm.asked if _.temperature == 0.0})
    assert per_request == 4


def test_stopping_early_is_a_setting(tmp_path, reference_program):
    llm = RecordingLLM(demo_sensitive("First"), tmp_path / "cache")
    fit(llm, [history()], score_every_candidate=False, use_persona=False)
    assert len(classify(llm.asked)["val-plain"]) == 2 * 3  # labeled-only, then unshuffled reaches 100%


def test_source_order_decides_the_unshuffled_candidate_and_the_70_30_split(tmp_path, reference_program):
    from dataclasses import replace

    from personalrewardbench.data.order import assign_source_positions
    from personalrewardbench.data.schema import Benchmark, Manifest

    # pair ids sort t10 < t2 < ...; the source order is t0..t10 (11 pairs, no val: split 7 / 4)
    h = history(train_flips=(True,) * 11, val_flips=())
    pairs = assign_source_positions([replace(p, pair_id=f"u-t{i}") for i, p in enumerate(h.train)])
    bench = Benchmark(tuple(sorted(pairs, key=lambda p: p.pair_id)), {"u": None},
                      Manifest("m", (), {}, 0, {}, "h"))
    (hist,) = bench.histories()
    assert [p.pair_id for p in hist.train] == [f"u-t{i}" for i in range(11)]
    llm = RecordingLLM(always("First"), tmp_path / "cache")
    fit(llm, [hist], num_candidates=0, use_persona=False)
    tags = [query_tag(c) for c, _ in llm.asked]
    assert tags[:7] == [f"t{i}" for i in range(7)]  # bootstrap: the first 70% in source order
    assert tags[7:11] == ["t7", "t8", "t9", "t10"]  # validation (labeled-only): the last 30%
    assert demo_tags(llm.asked[11][0]) == tuple(f"t{i}" for i in range(7))  # unshuffled: source order


def test_each_phase_has_a_progress_bar_with_requests_and_tokens(tmp_path, reference_program, capsys):
    from personalrewardbench.methods import MethodEnv, load_method

    llm = RecordingLLM(always("First"), tmp_path / "cache")
    method = load_method("synthesizeme", {"num_candidates": 1})
    method.setup(MethodEnv(seed=0, llm=llm, show_progress=True))
    method.fit([history()])
    err = capsys.readouterr().err
    for phase in ("bootstrap", "search1", "persona", "bootstrap2", "search2"):
        assert f"synthesizeme {phase} (1 users)" in err
    assert "sent=" in err and "prompt_tok=" in err
    phases = method.usage()["phases"]
    assert phases["bootstrap"]["sent"] == 6 and phases["persona"]["judgments"] == 1
    assert sum(p["calls"] for p in phases.values()) == len(llm.asked)
