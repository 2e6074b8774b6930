"""SynthesizeMe's search logic, with a scripted LLM whose answers are known."""

from __future__ import annotations

import re

import pytest

from personalrewardbench.data.schema import Message, PreferencePair, Query, UserHistory
from personalrewardbench.llm.scripted import ScriptedLLM
from personalrewardbench.methods import MethodEnv, MethodError, load_method
from tests.conftest import make_tiny_benchmark

_PAIR = re.compile(r"## First response\n(.*?)\n\n## Second response\n(.*?)\n\nWhich", re.S)


def _pkg():
    """The baseline's modules (imported through the registry, as the harness does)."""
    import importlib

    method = load_method("synthesizeme")
    pkg = type(method).__module__.rsplit(".", 1)[0]
    return {name: importlib.import_module(f"{pkg}.{name}")
            for name in ("examples", "search", "bootstrap", "settings", "stats", "persona", "prompts", "judge")}


M = _pkg()


def _responses(chat) -> tuple[str, str]:
    a, b = _PAIR.search(chat[-1].content).groups()
    return a, b


def _answer(choice: str) -> str:
    return f"Reasoning: a guess about this person.\nPreference: [[{choice}"


def longer_judge(chat, params) -> str:
    """Answers 'the longer response'; writes a fixed persona when asked for one."""
    if "Now write the persona" in chat[-1].content:
        return "Reasoning: they chose long replies.\nPersona: Likes long, detailed answers."
    a, b = _responses(chat)
    return _answer("First" if len(a) > len(b) else "Second")


class CountingLLM(ScriptedLLM):
    """A scripted LLM that also counts its generate calls (LLM batch calls)."""

    def __init__(self, fn, **kw):
        super().__init__(fn, **kw)
        self.generate_calls = 0
        self.requests = 0

    def generate(self, chats, params=None):
        self.generate_calls += 1
        self.requests += len(chats)
        return super().generate(chats, params)


def _fit(llm, bench, **config):
    config.setdefault("persona_program", "builtin")
    method = load_method("synthesizeme", config)
    method.setup(MethodEnv(seed=0, llm=llm, show_progress=False))
    method.fit(bench.histories())
    return method


def _ex(i: int, gold: str = "First") -> object:
    return M["examples"].Example(key=f"p{i}", pair_id=f"p{i}", context=(Message("user", f"q{i}"),),
                                 first=f"a{i}", second=f"b{i}", gold=gold)


# ------------------------------------------------------------------ step 1


def test_only_traces_whose_answer_matches_the_users_choice_are_kept():
    s = M["settings"].Settings()
    train = tuple(_ex(i, "First" if i % 3 else "Second") for i in range(6))
    llm = ScriptedLLM(lambda chat, p: _answer("First"))
    stats = M["stats"].RunStats()
    job = M["bootstrap"].BootstrapJob("u", train, None)
    traces = M["bootstrap"].bootstrap_traces(llm, [job], s, stats, seed=0, phase="bootstrap")["u"]
    assert sorted(traces) == [i for i in range(6) if train[i].gold == "First"]
    assert all(t == "a guess about this person." for t in traces.values())
    assert stats.get("u", "verified_traces") == 4 and stats.get("u", "bootstrap_attempts") == 6


def test_intended_teacher_sees_labeled_demos_but_never_the_example_it_explains():
    s = M["settings"].Settings(labeled_demos_in_prompts=True)
    train = tuple(_ex(i) for i in range(3))
    seen = []

    def fn(chat, params):
        seen.append(chat)
        return _answer("First")

    M["bootstrap"].bootstrap_traces(ScriptedLLM(fn), [M["bootstrap"].BootstrapJob("u", train, None)], s,
                                    M["stats"].RunStats(), seed=0, phase="bootstrap")
    for chat in seen:
        query = chat[-1].content
        demos = [m.content for m in chat[1:-1] if m.role == "user"]
        assert query not in demos
        assert len(demos) == 2  # the other labeled examples (max_labeled_demos=4 > 2 available)


# ------------------------------------------------------------------ step 2


def test_candidate_construction_matches_the_reference_shape():
    s = M["settings"].Settings()
    train = tuple(_ex(i) for i in range(8))
    traces = {1: "r1", 4: "r4", 6: "r6"}
    cands = M["search"].build_candidates("u", train, traces, s, 0, persona_only=False)
    assert [c.name for c in cands] == ["labeled-only", "unshuffled"] + [f"shuffle-{k}" for k in range(10)]
    labeled = cands[0].demos
    assert len(labeled) == 4 and all(d.reasoning is None for d in labeled)
    unshuffled = cands[1].demos
    assert [d.example.pair_id for d in unshuffled[:3]] == ["p1", "p4", "p6"]  # traces in train order
    assert [d.reasoning for d in unshuffled[:3]] == ["r1", "r4", "r6"]
    assert len(unshuffled) == 4 and unshuffled[3].reasoning is None  # filled with one raw labeled pair
    assert unshuffled[3].example.pair_id not in {"p1", "p4", "p6"}
    for c in cands[2:]:
        aug = [d for d in c.demos if d.reasoning is not None]
        raw = [d for d in c.demos if d.reasoning is None]
        assert 1 <= len(aug) <= 3 and len(raw) == max(0, 4 - len(aug))
        assert {d.example.pair_id for d in aug}.isdisjoint({d.example.pair_id for d in raw})
    # the reference's draws do not depend on the run seed; candidate_rng="seeded" ones do
    assert M["search"].build_candidates("u", train, traces, s, 1, persona_only=False) == cands
    seeded = M["settings"].Settings(candidate_rng="seeded")
    a = M["search"].build_candidates("u", train, traces, seeded, 0, persona_only=False)
    assert a == M["search"].build_candidates("u", train, traces, seeded, 0, persona_only=False)
    other = M["search"].build_candidates("u", train, traces, seeded, 1, persona_only=False)
    assert [c.demos for c in other] != [c.demos for c in a]


def test_persona_search_scores_persona_only_first():
    s = M["settings"].Settings()
    cands = M["search"].build_candidates("u", tuple(_ex(i) for i in range(4)), {}, s, 0, persona_only=True)
    assert len(cands) == 13 and cands[0].name == "persona-only" and cands[0].demos == ()


def _state(scores_per_candidate, stop=80.0, every=True):
    cands = [M["search"].Candidate(f"c{i}", ()) for i in range(len(scores_per_candidate))]
    val = tuple(_ex(i, "First") for i in range(4))
    return M["search"].SearchState("u", None, val, cands, stop, every), val


def _answers(n_right: int) -> list[str | None]:
    return ["First"] * n_right + [None] * (4 - n_right)


def test_ties_keep_the_earlier_candidate_and_only_strictly_higher_replaces():
    state, _ = _state([2, 3, 3, 1, 3])
    for right in [2, 3, 3, 1, 3]:
        state.record(_answers(right))
    assert state.best.name == "c1" and state.best_score == 75.0
    assert [s for _, s in state.scores] == [50.0, 75.0, 75.0, 25.0, 75.0]
    assert state.done and not state.stopped_early


def test_search_stops_at_the_first_candidate_reaching_the_stop_score():
    # the reference scores every candidate, then scans: later ones cannot be chosen
    state, _ = _state([1, 4, 0, 4])
    for right in [1, 4, 0, 4]:
        assert not state.done
        state.record(_answers(right))
    assert state.done and state.stopped_early and state.best.name == "c1" and len(state.scores) == 4
    # score_every_candidate=False: nothing is asked after the stop (the same choice)
    lazy, _ = _state([1, 4, 4], every=False)
    lazy.record(_answers(1))
    assert not lazy.done
    lazy.record(_answers(4))
    assert lazy.done and lazy.stopped_early and lazy.best.name == "c1" and len(lazy.scores) == 2


def test_failed_judgments_score_wrong():
    state, _ = _state([0])
    state.record([None, None, "First", "Second"])
    assert state.best_score == 25.0


def test_run_search_picks_the_demo_set_that_makes_the_judge_right():
    """The scripted judge is right only when it sees exactly 2 worked examples (labeled demos shown)."""
    s = M["settings"].Settings(labeled_demos_in_prompts=True)

    def fn(chat, params):
        n_demos = sum(1 for m in chat if m.role == "assistant")
        a, _ = _responses(chat)
        truth = "First" if a.startswith("a") else "Second"
        wrong = "Second" if truth == "First" else "First"
        return _answer(truth if n_demos == 2 else wrong)

    train = tuple(_ex(i) for i in range(6))
    val = tuple(M["examples"].present_both(
        PreferencePair("v0", "u", "d", (Message("user", "q"),), "a-chosen", "b-rejected", "val")))
    cands = [M["search"].Candidate("three", tuple(M["examples"].Demo(e) for e in train[:3])),
             M["search"].Candidate("two", tuple(M["examples"].Demo(e) for e in train[:2])),
             M["search"].Candidate("two-again", tuple(M["examples"].Demo(e) for e in train[2:4]))]
    state = M["search"].SearchState("u", None, val, cands, s.stop_at_score)
    M["search"].run_search(ScriptedLLM(fn), [state], s, M["stats"].RunStats(), seed=0, phase="search1")
    # chosen: "two"; the reference still scores the candidates after the one that stopped the scan
    assert state.best.name == "two" and state.stopped_early and len(state.scores) == 3


# ------------------------------------------------------------------ split


def test_user_without_val_pairs_is_split_70_30_in_given_order():
    pairs = tuple(PreferencePair(f"p{i}", "u", "d", (Message("user", "q"),), f"c{i}", f"r{i}", "train")
                  for i in range(10))
    sp = M["examples"].split_user(UserHistory("u", "d", pairs, ()), 0, 0.7)
    assert sp.note == "split-70-30"
    assert [e.pair_id for e in sp.train] == [f"p{i}" for i in range(7)]
    assert [e.pair_id for e in sp.val] == ["p7", "p8", "p9"]  # once each, as presented (reference)
    both = M["examples"].split_user(UserHistory("u", "d", pairs, ()), 0, 0.7, "both")
    assert [e.pair_id for e in both.val] == ["p7", "p7", "p8", "p8", "p9", "p9"]
    assert {e.gold for e in both.val} == {"First", "Second"}


def test_flip_field_decides_the_presentation():
    p = PreferencePair("p", "u", "d", (Message("user", "q"),), "C", "R", "train", meta={"flip": False})
    ex = M["examples"].present_once(p, 0)
    assert (ex.first, ex.second, ex.gold) == ("R", "C", "Second")


# ------------------------------------------------------------------ whole fit


def test_batched_fit_issues_one_batch_per_phase():
    bench = make_tiny_benchmark(n_users=4)
    llm = CountingLLM(longer_judge)
    method = _fit(llm, bench)
    batches = method.usage()["llm_batches"]
    # every candidate is scored (the reference's way): all users' candidates in one batch per search
    assert batches == {"bootstrap": 1, "search1": 1, "persona": 1, "bootstrap2": 1, "search2": 1}
    assert llm.generate_calls == sum(batches.values())


def test_search_stopping_early_goes_in_rounds_and_sends_a_subset_of_the_same_requests():
    bench = make_tiny_benchmark(n_users=4)
    seen: dict[str, list[str]] = {"every": [], "early": []}

    def recording(name):
        def fn(c, p):
            seen[name].append(repr(c))
            return longer_judge(c, p)
        return fn

    every, early = CountingLLM(recording("every")), CountingLLM(recording("early"))
    a = _fit(every, bench)
    b = _fit(early, bench, score_every_candidate=False)
    batches = b.usage()["llm_batches"]
    # even users are always right (stop after one candidate), odd users never: 12 and 13 rounds
    assert batches == {"bootstrap": 1, "search1": 12, "persona": 1, "bootstrap2": 1, "search2": 13}
    assert early.generate_calls == sum(batches.values())
    assert set(seen["early"]) < set(seen["every"])  # a strict subset of the same prompts
    assert early.requests < every.requests
    chosen = lambda m: {u: (x.persona, x.demos, x.candidate, x.val_score) for u, x in m.models.items()}  # noqa: E731
    assert chosen(a) == chosen(b)  # the same choices


def test_loop_mode_issues_the_same_requests_user_by_user():
    bench = make_tiny_benchmark(n_users=4)
    batched, loop = CountingLLM(longer_judge), CountingLLM(longer_judge)
    a = _fit(batched, bench)
    b = _fit(loop, bench, batch_across_users=False)
    assert batched.requests == loop.requests and batched.usage.calls == loop.usage.calls
    assert batched.usage.prompt_tokens == loop.usage.prompt_tokens
    assert loop.generate_calls > batched.generate_calls
    assert b.usage()["llm_batches"]["bootstrap"] == 4
    assert a.artifacts() == b.artifacts()


def test_persona_only_wins_when_it_already_reaches_the_stop_score():
    bench = make_tiny_benchmark(n_users=2)
    method = _fit(ScriptedLLM(longer_judge), bench)
    art = method.artifacts()["user0"]
    assert "Likes long, detailed answers." in art and "Chosen candidate: persona-only" in art
    assert "Demos (0;" in art


@pytest.mark.parametrize("config,persona,phases", [
    ({"use_demos": False}, True, {"bootstrap", "search1", "persona"}),
    ({"use_persona": False}, False, {"bootstrap", "search1"}),
    # personas from all verified traces: search 1's choice would be unused, so it does not run
    ({"use_demos": False, "persona_source": "verified"}, True, {"bootstrap", "persona"}),
    ({"persona_source": "verified"}, True, {"bootstrap", "persona", "bootstrap2", "search2"}),
])
def test_ablations_run_only_their_phases(config, persona, phases):
    method = _fit(ScriptedLLM(longer_judge), make_tiny_benchmark(n_users=2), **config)
    assert set(method.usage()["llm_batches"]) == phases
    assert ("Persona:" in method.artifacts()["user1"]) is persona


def test_resampled_retries_variant_retries_then_counts_failed():
    calls = []

    def fn(chat, params):
        calls.append(params)
        if "Now write the persona" in chat[-1].content:
            return "Persona: anything."
        return "I cannot decide."

    bench = make_tiny_benchmark(n_users=1, n_train=2, n_val=1, n_test=1)
    method = _fit(ScriptedLLM(fn), bench, num_candidates=0, rebootstrap_with_persona=False, retry_temperature=0.7,
                  validation_orders="both")
    test = bench.pairs_of("test")[0]
    out = method.predict([Query("q1", "user0", test.context, test.chosen, test.rejected)])
    assert out == [None]
    usage = method.usage()
    assert usage["failed_judgments"] == 1
    assert usage["per_user"]["user0"]["failed_predict_judgments"] == 1
    # bootstrap 2 + search1 (2 candidates x 2 val orders) + search2 (3 x 2) + predict 1 = 13 judgments, 4 tries
    assert usage["per_user"]["user0"]["failed_fit_judgments"] == 12
    judge_calls = [p for p in calls if p.stop == M["prompts"].STOP_STRINGS]
    # no trace is verified, so every candidate of a search shows no demos: its prompts are the same
    # requests (one batch per search), computed once: 2 + 2 + 2 + 1 = 7 distinct judgments, 4 tries each
    assert len(judge_calls) == 7 * 4
    assert {p.temperature for p in judge_calls} == {0.0, 0.7}


class BudgetCheckingLLM(ScriptedLLM):
    """A scripted LLM that fails the test if any prompt plus its reply cap exceeds the context."""

    def generate(self, chats, params=None):
        for chat in chats:
            assert self.count_tokens(chat) + params.max_tokens <= self.context_length
        return super().generate(chats, params)


def test_prompts_fit_a_small_context_by_dropping_whole_demos():
    bench = make_tiny_benchmark(n_users=2, n_train=8)
    llm = BudgetCheckingLLM(longer_judge, context_length=300)
    method = _fit(llm, bench, max_judge_tokens=64, max_persona_tokens=64, labeled_demos_in_prompts=True)
    assert llm.usage.truncated_prompts == 0
    per_user = method.usage()["per_user"]
    assert per_user["user0"]["items_dropped"] > 0  # not even the 4 labeled demos fit
    assert per_user["user0"]["persona_examples_dropped"] > 0
    assert sum(u["turns_dropped"] for u in per_user.values()) == 0  # whole demos go first


def test_bad_settings_are_one_clear_error():
    with pytest.raises(MethodError, match="unknown config key 'num_candidate' \\(did you mean 'num_candidates'\\?\\)"):
        load_method("synthesizeme", {"num_candidate": 3})
    with pytest.raises(MethodError, match="enable at least one"):
        load_method("synthesizeme", {"use_persona": False, "use_demos": False})
    with pytest.raises(MethodError, match="persona_source"):
        load_method("synthesizeme", {"persona_source": "all"})


def test_variants_are_registered():
    from personalrewardbench.methods import list_methods

    names = list_methods()
    assert {"synthesizeme", "synthesizeme-just-personas", "synthesizeme-just-demos"} <= set(names)
    assert load_method("synthesizeme-just-demos").get_config()["use_persona"] is False


def test_bootstrapped_demo_limit_caps_traces_per_set():
    s = M["settings"].Settings(max_bootstrapped_demos=1)
    train = tuple(_ex(i) for i in range(6))
    cands = M["search"].build_candidates("u", train, {0: "r0", 2: "r2", 5: "r5"}, s, 0, persona_only=False)
    for c in cands[1:]:
        assert sum(d.reasoning is not None for d in c.demos) == 1 and len(c.demos) == 4


def test_usage_and_artifacts_are_json_and_unknown_users_get_the_plain_judge():
    import json

    bench = make_tiny_benchmark(n_users=2)
    method = _fit(ScriptedLLM(longer_judge), bench)
    json.dumps(method.usage())
    json.dumps(method.artifacts())
    q = Query("q", "stranger", (Message("user", "hi"),), "a long answer with many words", "short")
    assert method.predict([q]) == [1.0]
    assert method.usage()["per_user"]["stranger"]["fitted"] is False
