"""The transformers backend's engine: shared-prefix reuse and ragged batched decoding.

Logic (prefix tree, LRU store) on plain data; numerics on the real SmolLM2:
reusing a prefix and decoding ragged rows together must give what a plain,
unbatched forward pass / ``model.generate`` gives.
"""

from __future__ import annotations

import pytest
import torch

from personalrewardbench.data.schema import Message
from personalrewardbench.llm import GenerationParams, make_llm
from personalrewardbench.llm.prefix_store import PrefixStore, shared_prefixes

# ----------------------------------------------------------------------------- logic


def test_shared_prefixes_tree():
    instr = tuple(range(100, 140))  # 40 tokens every prompt starts with
    user_a = instr + tuple(range(500, 560))  # a user's 60-token history
    prompts = [user_a + (1, 2, 3), instr + (7, 8), user_a + (4, 5), instr + (9,), user_a + (6,)]
    out = shared_prefixes(prompts, min_shared=24)
    assert out == [(instr, [1, 3, 0, 2, 4]), (user_a, [0, 2, 4])]  # parent first, members in token order


def test_shared_prefix_leaves_each_member_a_token_and_skips_short_gains():
    base = tuple(range(50))
    assert shared_prefixes([base, base + (1,)], min_shared=24) == [(base[:49], [0, 1])]
    assert shared_prefixes([base[:10] + (1,), base[:10] + (2,)], min_shared=24) == []
    assert shared_prefixes([base], min_shared=1) == []
    child = base + tuple(range(200, 210))  # only 10 more tokens than its parent: folded into the parent
    assert shared_prefixes([child + (1,), child + (2,), base + (3,)], min_shared=24) == [(base, [2, 0, 1])]


def _kv(n_tokens: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.zeros(1, n_tokens, 4), torch.zeros(1, n_tokens, 4))]


def test_prefix_store_longest_match_and_lru_budget():
    import numpy as np

    per_token = 2 * 4 * 4  # keys + values, 4 floats each
    store = PrefixStore(max_bytes=per_token * 25)
    store.add((1, 2, 3, 4, 5), _kv(5))
    store.add((1, 2, 9), _kv(3))
    entry, n = store.match(np.array([1, 2, 3, 4, 7]), limit=10)
    assert entry.key == (1, 2, 3, 4, 5) and n == 4
    entry, n = store.match(np.array([1, 2, 3, 4, 5]), limit=4)  # a prompt keeps at least one token to run
    assert n == 4
    store.add((8,) * 20, _kv(20))  # over budget: the least recently used entry goes
    assert list(store.entries) == [(1, 2, 3, 4, 5), (8,) * 20]
    assert store.bytes == per_token * 25
    store.add((5,) * 30, _kv(30))  # bigger than the whole budget: not kept
    assert (5,) * 30 not in store.entries


# ----------------------------------------------------------------------------- real SmolLM2

INSTR = Message("system", "You predict which of two replies a particular person prefers. " * 4)
HISTORY = ("Comparisons this person made before:\n" + "\n".join(
    f"# Past comparison {i}\nPrompt: how do I {t}?\nPicked: the shorter, plainer reply." for i, t in
    enumerate(["boil rice", "tie a tie", "fix a flat tyre", "sleep better", "learn French"])))


def _chat(question: str, a: str, b: str, history: bool = True) -> list[Message]:
    pre = HISTORY + "\n\n# New comparison\n" if history else ""
    return [INSTR, Message("user", f"{pre}User: {question}\n\n## First\n{a}\n\n## Second\n{b}\n\n"
                                   "Which reply would this person prefer? Answer First or Second.")]


CHATS = [_chat("How do I make tea?", "Boil water, steep 3 minutes.", "Tea is an ancient drink. " * 6),
         _chat("How do I make tea?", "Tea is an ancient drink. " * 6, "Boil water, steep 3 minutes."),
         _chat("What is 2+2?", "4", "It is four, of course, as arithmetic shows."),
         _chat("Name a colour.", "Blue.", "Green, like grass.", history=False),
         [Message("user", "Say hello.")]]


@pytest.fixture(scope="module")
def llm(tmp_path_factory):
    model = make_llm("transformers", use_cache=False, progress=False)
    yield model
    model.close()


def _plain_next_logprobs(llm, chat) -> torch.Tensor:
    ids = torch.tensor([llm._ids(llm.render(chat))])
    with torch.inference_mode():
        return llm.model(ids).logits[0, -1].float().log_softmax(-1)


def test_reused_prefixes_score_like_a_plain_forward_pass(llm):
    llm.engine.store.clear()
    before = llm.engine.store.reused_tokens
    scores = llm.choice_logprobs(CHATS, ["First", "Second"])
    assert llm.engine.store.reused_tokens > before  # the instruction and the history were shared
    for chat, got in zip(CHATS, scores, strict=True):
        lp = _plain_next_logprobs(llm, chat)
        tok = {c: llm.tokenizer(c, add_special_tokens=False).input_ids for c in ("First", "Second")}
        # the single-token spellings dominate; the engine's value is >= each of them
        for c, ids in tok.items():
            if len(ids) == 1:
                assert got[c] >= float(lp[ids[0]]) - 1e-4
    again = llm.choice_logprobs(CHATS, ["First", "Second"])  # now every prompt comes from the store
    for a, b in zip(scores, again, strict=True):
        assert a == pytest.approx(b, abs=1e-4)


def test_engine_logprobs_match_unshared_computation(llm):
    prompts = [llm._ids(llm.render(c)) for c in CHATS]
    tok = llm.tokenizer("First", add_special_tokens=False).input_ids[0]
    llm.engine.store.clear()
    with torch.inference_mode():
        single, _ = llm.engine.choice_logprobs(prompts, [tok], [])
    for r, chat in enumerate(CHATS):
        assert float(single[r, 0]) == pytest.approx(float(_plain_next_logprobs(llm, chat)[tok]), abs=1e-4)


def test_ragged_greedy_decoding_equals_model_generate(llm):
    params = GenerationParams(max_tokens=24)
    llm.engine.store.clear()
    ours = llm.generate(CHATS, params)
    for chat, got in zip(CHATS, ours, strict=True):
        ids = torch.tensor([llm._ids(llm.render(chat))])
        with torch.inference_mode():
            ref = llm.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=24, do_sample=False,
                                     pad_token_id=llm.tokenizer.pad_token_id)
        new = ref[0, ids.shape[1]:].tolist()
        eos = llm.tokenizer.eos_token_id
        text = llm.tokenizer.decode(new[:new.index(eos)] if eos in new else new, skip_special_tokens=True)
        assert got.text == text
        assert got.completion_tokens == len(new)


def test_sampling_is_seeded_per_request_not_per_batch(llm):
    params = GenerationParams(max_tokens=16, temperature=0.9, seed=11)
    batched = llm.generate(CHATS, params)
    alone = [llm.generate([c], params)[0] for c in CHATS[::-1]][::-1]
    assert [c.text for c in batched] == [c.text for c in alone]
    other_seed = llm.generate(CHATS, GenerationParams(max_tokens=16, temperature=0.9, seed=12))
    assert [c.text for c in other_seed] != [c.text for c in batched]


def test_stop_strings_end_rows_independently(llm):
    params = GenerationParams(max_tokens=40, stop=(".",))
    out = llm.generate(CHATS[:3] + [[Message("user", "Count from 1 to 30 separated by commas")]], params)
    for c in out:
        assert "." not in c.text
        assert c.completion_tokens <= 40


def test_a_long_decode_stops_within_one_step_of_the_deadline(llm):
    import time

    from personalrewardbench.llm.base import DeadlineExceeded, deadline_scope
    from personalrewardbench.llm.hf_engine import Sampling

    prompts = [llm._ids(llm.render(c)) for c in CHATS[:2]]
    t = time.monotonic()
    with torch.inference_mode():  # warm: the prefill and two decoding steps, timed (a loaded CPU is slower)
        llm.engine.generate(prompts, Sampling(max_new=[2, 2]), lambda tokens: False)
    warm = time.monotonic() - t
    never = Sampling(max_new=[1500, 1500])  # no end-of-sequence token: 1,500 steps (tens of seconds on a CPU)
    t = time.monotonic()
    with torch.inference_mode(), deadline_scope(t + 1.0), pytest.raises(DeadlineExceeded):
        llm.engine.generate(prompts, never, lambda tokens: False)
    elapsed = time.monotonic() - t
    assert 1.0 <= elapsed < 1.0 + warm + 0.5, f"a 1 s deadline stopped after {elapsed:.2f} s (one step: < {warm:.2f} s)"
    # through the public API too (the request cache's batching, then the engine); nothing is left half-done
    t = time.monotonic()
    stories = [[Message("user", f"Write a long story about the number {i}.")] for i in range(160)]  # 10 batches
    with deadline_scope(t + 1.0), pytest.raises(DeadlineExceeded):
        llm.generate(stories, GenerationParams(max_tokens=200))
    assert time.monotonic() - t < 1.0 + warm + 0.5
    assert llm.generate([CHATS[4]], GenerationParams(max_tokens=3))[0].completion_tokens <= 3  # still usable
