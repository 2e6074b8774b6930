"""SandboxedMethod: same answers as in-process; every way an adapter can fail gives a clear report."""

from __future__ import annotations

import pytest

from personalrewardbench.evaluate import make_queries
from personalrewardbench.methods import load_method
from personalrewardbench.submissions.checks import SandboxError, check_predictions
from personalrewardbench.submissions.limits import SandboxLimits
from personalrewardbench.submissions.sandbox import SandboxedMethod
from personalrewardbench.submissions.spec import SubmissionError
from tests.submissions.conftest import MISBEHAVING, run_method


def test_sandboxed_predictions_match_in_process(tiny):
    expected = run_method(load_method(str(MISBEHAVING)), tiny)
    with SandboxedMethod(MISBEHAVING) as m:
        assert m.name == "misbehaving"
        assert m.capabilities == frozenset({"pairwise"})
        assert m.get_config() == {"behavior": "ok"}
        assert m.method_info.tier == "submitted"
        got = run_method(m, tiny)
        report = m.usage()["sandbox"]
    assert got == expected and len(got) == 2 * len(tiny.pairs_of("test"))
    assert report["mode"] == "bwrap" and "labels withheld" in report["enforced"]


def test_variant_config_and_adapter_stdout_do_not_break_the_run(tiny):
    with SandboxedMethod(MISBEHAVING, "misbehaving-junk-stdout") as m:
        assert m.name == "misbehaving-junk-stdout"
        assert m.get_config() == {"behavior": "junk-stdout"}
        assert len(run_method(m, tiny)) == 18
        assert "debug output on stdout" in m.log_path.read_text()


FAILURES = [
    # variant, limits, phase, kind, words the report must contain
    ("raise-fit", {}, "fit", "crash-exception", ["ValueError: bad things happened while fitting", "adapter.py"]),
    ("exit", {}, "fit", "crash", ["exited unexpectedly", "exit code 3"]),
    ("segfault", {}, "fit", "crash", ["segmentation fault"]),
    ("hang", {"time_s": 3}, "predict", "timeout", ["time limit of 3 s", "--time-limit"]),
    ("memory", {"memory_mb": 1024}, "fit", "memory", ["memory limit", "1024 MiB", "--memory-limit"]),
    ("short", {}, "predict", "bad-output", ["returned 17 values for 18 queries", "one value per query"]),
    ("nan", {}, "predict", "bad-output", ["1 invalid value", "nan (not finite)", "None for a failed judgment"]),
    ("range", {}, "predict", "bad-output", ["1.5 is outside [0, 1]"]),
    ("string", {}, "predict", "bad-output", ["18 invalid value", "a str"]),
    ("break-protocol", {}, "predict", "protocol", ["broke the protocol", "not a valid message", "this is not json"]),
]


@pytest.mark.parametrize("variant,limits,phase,kind,words", FAILURES, ids=[f[0] for f in FAILURES])
def test_each_failure_is_reported_and_the_process_is_stopped(tiny, variant, limits, phase, kind, words):
    m = SandboxedMethod(MISBEHAVING, f"misbehaving-{variant}", limits=SandboxLimits(**limits))
    try:
        with pytest.raises(SandboxError) as info:
            run_method(m, tiny)
        msg = str(info.value)
        assert info.value.kind == kind, msg
        assert f"submission 'misbehaving-{variant}' failed during {phase}" in msg
        for w in words:
            assert w in msg
        assert m._proc.poll() is not None  # killed, nothing left running
        with pytest.raises(SandboxError):  # and it stays failed: no partial answers later
            m.predict([])
    finally:
        m.close()


def test_check_predictions_accepts_none_and_boundaries(tiny):
    queries, _ = make_queries(tiny.pairs_of("test"), 0)
    values = [None, 0.0, 1.0, 0.5] + [0.25] * (len(queries) - 4)
    assert check_predictions(values, queries, "x") == values
    with pytest.raises(SandboxError, match="not a list"):
        check_predictions({"a": 1}, queries, "x")


def test_unknown_variant_is_a_clear_error():
    with pytest.raises(SubmissionError, match="no variant named 'misbehaving-nope'"):
        SandboxedMethod(MISBEHAVING, "misbehaving-nope")


def test_adapter_uses_the_harness_llm_through_the_sandbox(tiny):
    from personalrewardbench.llm.scripted import ScriptedLLM
    from personalrewardbench.methods import MethodEnv
    from tests.submissions.conftest import FIXTURES

    def choice(chat, choices):  # prefers the longer response, as a scripted stand-in for a model
        text = chat[-1].content
        a, b = text.split("\nB: ")[0], text.split("\nB: ")[1]
        return {"A": -0.1, "B": -2.0} if len(a) > len(b) else {"A": -2.0, "B": -0.1}

    llm = ScriptedLLM(generate_fn=lambda chat, params: "A\nignored", choice_fn=choice, identity="judge")
    with SandboxedMethod(FIXTURES / "llm-judge") as m:
        m.setup(MethodEnv(seed=0, llm=llm, show_progress=False))
        m.fit(tiny.histories())
        queries, _ = make_queries(tiny.pairs_of("test"), 0)
        preds = m.predict(queries)
        notes = m.artifacts()
    assert [p > 0.5 for p in preds] == [len(q.first) > len(q.second) for q in queries]
    assert notes["identity"] == llm.identity and notes["context_length"] == "8192"
    assert notes["generated"].startswith("A") and int(notes["tokens"]) > 5
    assert llm.usage.calls == 1 + len(queries)  # accounted in the harness, where the cache lives


def test_llm_method_without_an_llm_gets_a_clear_error(tiny, tmp_path):
    from personalrewardbench.submissions.scoring import score_submission
    from tests.submissions.conftest import FIXTURES

    [outcome] = score_submission(FIXTURES / "llm-judge", tiny, tmp_path, llm=None, show_progress=False)
    assert outcome.failed and "needs an LLM ([requirements] llm = true); pass --backend/--model" in outcome.error
