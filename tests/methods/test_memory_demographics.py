"""memory and demographics: prompt logic with a scripted LLM; end to end with the real SmolLM2."""

from __future__ import annotations

import math

import pytest

from personalrewardbench.data.schema import Message, PreferencePair, Query, UserHistory
from personalrewardbench.evaluate import run_evaluation
from personalrewardbench.judging import FIRST, SECOND
from personalrewardbench.llm import ScriptedLLM
from personalrewardbench.llm_judge import CHOICE_RESERVE
from personalrewardbench.methods import MethodEnv, load_method
from personalrewardbench.runs import verify_run
from tests.conftest import make_tiny_benchmark
from tests.methods.judge_e2e import evaluate_and_verify, smollm2


def _pair(uid: str, k: int, split: str = "train", **meta) -> PreferencePair:
    return PreferencePair(pair_id=f"{uid}-{k}", user_id=uid, dataset="d", context=(Message("user", f"Q{k} of {uid}"),),
                          chosen=f"chosen{k}", rejected=f"rejected{k}", split=split, meta=meta)


def _history(uid: str, n_train: int = 3, n_val: int = 1, profile=None, **meta) -> UserHistory:
    return UserHistory(uid, "d", tuple(_pair(uid, k, **meta) for k in range(n_train)),
                       tuple(_pair(uid, n_train + k, "val", **meta) for k in range(n_val)), profile)


def _query(uid: str) -> Query:
    return Query(f"q-{uid}", uid, (Message("user", "Which is nicer?"),), "reply alpha", "reply beta")


class Recorder:
    """A scripted LLM that remembers every chat it scored and always prefers First."""

    def __init__(self, context_length: int = 8192) -> None:
        self.chats: list = []
        self.llm = ScriptedLLM(choice_fn=self.choice, context_length=context_length)

    def choice(self, chat, choices):
        self.chats.append(chat)
        return {FIRST: math.log(0.7), SECOND: math.log(0.3)}


def _run(name: str, histories, queries, context_length: int = 8192, **config):
    rec = Recorder(context_length)
    m = load_method(name, config or None)
    m.setup(MethodEnv(seed=0, llm=rec.llm, show_progress=False))
    m.fit(histories)
    return m, m.predict(queries), rec


# ---------------------------------------------------------------------------------- memory


def test_memory_shows_past_choices_newest_first_with_the_chosen_side_marked():
    m, probs, rec = _run("memory-direct", [_history("u1"), _history("u2")], [_query("u1")])
    assert probs == [pytest.approx(0.7)]
    body = rec.chats[0][-1].content
    # newest first: val pair 3, then train 2, 1, 0; nothing of the other user
    order = [body.index(f"Q{k} of u1") for k in (3, 2, 1, 0)]
    assert order == sorted(order) and "u2" not in body
    assert body.index("Past comparison 1") < body.index("Q3 of u1") < body.index("# New comparison")
    for k in range(4):  # each past comparison says which side was the chosen one
        block = body[body.index(f"Q{k} of u1"):]
        block, _, rest = block.partition("Preferred: ")
        chosen_first = block.index(f"chosen{k}") < block.index(f"rejected{k}")
        assert rest.split()[0] == (FIRST if chosen_first else SECOND)
    marked = [body.split(f"Q{k} of u1")[1].split("Preferred: ")[1].split()[0] for k in range(4)]
    assert set(marked) == {FIRST, SECOND}  # both display orders occur (seeded coin per pair)
    assert m.usage()["per_user"]["u1"]["history_items"] == 4


def test_memory_orders_by_timestamp_when_every_pair_has_one_and_can_leave_out_val():
    h = UserHistory("u1", "d", (_pair("u1", 0, timestamp=30), _pair("u1", 1, timestamp=10)),
                    (_pair("u1", 2, "val", timestamp=20),))
    _, _, rec = _run("memory-direct", [h], [_query("u1")])
    body = rec.chats[0][-1].content
    assert body.index("Q0 of u1") < body.index("Q2 of u1") < body.index("Q1 of u1")
    _, _, rec = _run("memory-direct", [_history("u1")], [_query("u1")], include_val=False)
    assert "Q3 of u1" not in rec.chats[0][-1].content and "Q2 of u1" in rec.chats[0][-1].content


def test_memory_drops_oldest_history_to_fit_and_counts_it():
    full = Recorder()
    m0 = load_method("memory-direct")
    m0.setup(MethodEnv(llm=full.llm))
    m0.fit([_history("u1", n_train=8, n_val=0)])
    m0.predict([_query("u1")])
    need = full.llm.count_tokens(full.chats[0])
    m, probs, rec = _run("memory-direct", [_history("u1", n_train=8, n_val=0)], [_query("u1")] * 2,
                         context_length=need + CHOICE_RESERVE - 5)
    body = rec.chats[0][-1].content
    assert "Q7 of u1" in body and "Q0 of u1" not in body  # oldest gone, newest kept
    per = m.usage()["per_user"]["u1"]
    assert per["items_dropped"] == 2 and per["truncated_conversations"] == 0  # one per query
    assert rec.llm.count_tokens(rec.chats[0]) <= need - 5 and rec.llm.usage.truncated_prompts == 0


def test_memory_max_history_caps_the_items():
    _, _, rec = _run("memory-direct", [_history("u1", n_train=5, n_val=0)], [_query("u1")], max_history=2)
    body = rec.chats[0][-1].content
    assert "Q4 of u1" in body and "Q3 of u1" in body and "Q2 of u1" not in body


def test_memory_default_is_the_reference_judge_with_history_in_source_order():
    """Newest = the latest source position (train and val interleave in the source), not pair-id order."""
    h = UserHistory("u1", "d", (_pair("u1", 0, source_position=2), _pair("u1", 1, source_position=0)),
                    (_pair("u1", 2, "val", source_position=1),))
    seen = []
    m = load_method("memory")
    m.setup(MethodEnv(seed=0, llm=ScriptedLLM(generate_fn=lambda c, p: seen.append((c, p)) or "Answer: Second"),
                      show_progress=False))
    m.fit([h])
    assert m.predict([_query("u1")]) == [0.0]
    (chat, params), = seen
    assert (params.max_tokens, params.temperature) == (8192, 0.0) and "human judge" in chat[0].content
    body = chat[-1].content
    assert body.index("Q0 of u1") < body.index("Q2 of u1") < body.index("Q1 of u1")  # positions 2, 1, 0


# ---------------------------------------------------------------------------------- demographics

PRISM_LIKE = {
    "user_id": "user42", "consent": "yes", "age": "25-34 years old", "gender": "Female",
    "education": "University Bachelors Degree", "employment_status": "Working full-time",
    "location": {"birth_country": "Chile", "reside_country": "Chile", "reside_region": "Latin America"},
    "religion": {"self_described": "", "simplified": "No religion"},
    "stated_prefs": {"values": 80, "creativity": 35, "fluency": None},
    "lm_usecases": ["coding", "travel advice"], "self_description": "I like  short, direct answers.",
    "system_string": None, "timing_duration_s": 512.3,
}


def test_render_profile_shows_survey_answers_and_leaves_out_bookkeeping():
    from personalrewardbench.methods import resolve_method

    folder = resolve_method("demographics").folder
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("demographics_adapter_under_test", folder / "adapter.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    text = mod.render_profile(PRISM_LIKE)
    lines = text.splitlines()
    assert lines[0] == "- Age: 25-34 years old" and "- Gender: Female" in lines
    assert "- Location: birth country: Chile; reside country: Chile; reside region: Latin America" in lines
    assert "- Religion: simplified: No religion" in lines
    assert "- Stated prefs: values: 80; creativity: 35" in lines
    assert "- Lm usecases: coding, travel advice" in lines
    assert "- Self description: I like short, direct answers." in lines
    assert not any(s in text for s in ("user42", "consent", "512.3", "System string", "fluency"))


def test_demographics_puts_the_profile_in_the_prompt_and_counts_users_without_one():
    hs = [_history("u1", profile=PRISM_LIKE), _history("u2", profile=None)]
    m, probs, rec = _run("demographics-direct", hs, [_query("u1"), _query("u2")])
    assert probs == [pytest.approx(0.7)] * 2
    with_profile, without = rec.chats[0][-1].content, rec.chats[1][-1].content
    assert "- Gender: Female" in with_profile and "Q0 of u1" not in with_profile  # profile, not history
    assert "No survey answers are available" in without and "Gender" not in without
    per = m.usage()["per_user"]
    assert per["u1"]["no_profile"] == 0 and per["u2"]["no_profile"] == 1
    assert "profile" in m.capabilities


def test_demographics_keeps_the_profile_and_cuts_the_conversation_instead():
    long_q = Query("q", "u1", (Message("user", "old " * 300), Message("assistant", "ok"), Message("user", "Now?")),
                   "reply alpha", "reply beta")
    m, _, rec = _run("demographics-direct", [_history("u1", profile=PRISM_LIKE)], [long_q], context_length=200)
    body = rec.chats[0][-1].content
    assert "- Gender: Female" in body and "old old old" not in body and "User: Now?" in body
    assert m.usage()["per_user"]["u1"]["truncated_conversations"] == 1


NAN_PROFILE = {**PRISM_LIKE, "age": float("nan"), "marital_status": "nan", "english_proficiency": None,
               "gender": "  ", "ethnicity": {"simplified": float("nan"), "self_described": "Mixed"}}


def _generate_recorder():
    seen = []
    return seen, ScriptedLLM(generate_fn=lambda c, p: seen.append(c) or "Answer: First")


def test_demographics_default_shows_the_demographic_fields_only_as_the_paper():
    seen, llm = _generate_recorder()
    m = load_method("demographics")
    assert (m.profile, m.variant, m.answer, m.wording) == ("demographics", "cot", "parse", "human-judge")
    m.setup(MethodEnv(seed=0, llm=llm, show_progress=False))
    m.fit([_history("u1", profile=PRISM_LIKE)])
    assert m.predict([_query("u1")]) == [1.0]
    body = seen[0][-1].content
    profile = body.split("in a survey:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert profile == ["- Age: 25-34 years old", "- Gender: Female", "- Employment status: Working full-time",
                       "- Education: University Bachelors Degree", "- Religion: No religion",
                       "- Country of residence: Chile", "- Country of birth: Chile"]
    assert not any(s in body for s in ("short, direct", "Stated prefs", "creativity", "coding"))


@pytest.mark.parametrize("name", ["demographics", "demographics-full-profile", "demographics-direct"])
def test_nan_none_and_empty_survey_values_are_missing_on_every_path(name):
    seen, llm = _generate_recorder()
    rec = Recorder()
    m = load_method(name)
    m.setup(MethodEnv(seed=0, llm=rec.llm if m.variant == "direct" else llm, show_progress=False))
    m.fit([_history("u1", profile=NAN_PROFILE)])
    m.predict([_query("u1")])
    body = (rec.chats or seen)[0][-1].content
    assert "nan" not in body.lower().replace("nancy", "") and "None" not in body
    assert "Age:" not in body and "Gender:" not in body and "Marital" not in body
    assert "Mixed" in body  # the answered part of a half-answered field stays


def test_missing_rule():
    from personalrewardbench.missing import is_missing, present_text

    assert all(is_missing(v) for v in (None, float("nan"), "", "  ", "nan", "NaN", "None", "null", [], {}))
    assert not any(is_missing(v) for v in (0, 0.0, False, "no", "Nancy", ["x"]))
    assert present_text("  Female ") == "Female" and present_text(float("nan")) is None


def test_demographics_is_not_applicable_without_profiles(tmp_path):
    bench = make_tiny_benchmark(n_users=2, profiles=False)
    rec = Recorder()
    res = run_evaluation(load_method("demographics"), bench, MethodEnv(llm=rec.llm, show_progress=False),
                         tmp_path / "run", resamples=50, show_progress=False)
    assert res["status"] == "not_applicable" and res["scores"] is None and "profile" in res["not_applicable_reason"]
    assert rec.chats == [] and verify_run(tmp_path / "run", bench) == []


# ---------------------------------------------------------------------------------- end to end


def test_memory_end_to_end_with_smollm2_trims_history_to_a_small_context(tmp_path):
    llm = smollm2(max_model_len=300)  # too small for all 3 past comparisons (about 322 tokens): one must go
    bench = make_tiny_benchmark(n_users=2, n_train=3, n_val=0, n_test=1)
    res = evaluate_and_verify("memory-direct", bench, llm, tmp_path)
    assert res["status"] == "ok" and res["scores"]["n_judgments"] == 4 and res["scores"]["n_failed"] == 0
    totals = res["method_usage"]["totals"]
    assert totals["history_items"] == 6 and totals["items_dropped"] == 4  # the oldest one, for each query
    assert totals["truncated_conversations"] == 0 and llm.usage.truncated_prompts == 0  # fitted by dropping


def test_demographics_end_to_end_with_smollm2(tmp_path):
    bench = make_tiny_benchmark(n_users=2, n_train=1, n_val=0, n_test=1, profiles=True)
    res = evaluate_and_verify("demographics", bench, smollm2(), tmp_path, {"max_reasoning_tokens": 16})
    assert res["status"] == "ok" and res["scores"]["n_judgments"] == 4
    assert res["method_usage"]["totals"]["failed_judgments"] == res["scores"]["n_failed"]
    assert res["method_usage"]["totals"]["no_profile"] == 0
    assert "profile_intro" in res["provenance"]["prompt_template_hashes"]
