"""The transformers backend with the real embedded SmolLM2-135M-Instruct on the CPU."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from personalrewardbench.data.schema import Message
from personalrewardbench.llm import GenerationParams, make_llm
from personalrewardbench.llm.choices import choice_variants, logsumexp, variant_token_ids

JUDGE = [Message("system", "You compare two answers and reply with one letter."),
         Message("user", "Question: What is the capital of France?\nResponse A: Paris is the capital of France.\n"
                         "Response B: The capital of France is Berlin.\nWhich response is correct? Answer A or B.")]
CAPITAL = [Message("user", "What is the capital of France? Answer in one word.")]
HELLO = [Message("system", "You are terse."), Message("user", "Say hello to Bob.")]
MULTI = [Message("user", "Paris is the capital of France. Reply with Response A (true) or Response B (false).")]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("llm-cache")


@pytest.fixture(scope="module")
def llm(cache_dir):
    model = make_llm("transformers", cache_dir=str(cache_dir), batch_size=4)
    yield model
    model.close()


def direct_next_logprobs(llm, chat) -> torch.Tensor:
    """Next-token log-probs from one plain, unpadded forward pass (independent of the backend's batching)."""
    ids = torch.tensor([llm.tokenizer(llm.render(chat), add_special_tokens=False).input_ids])
    with torch.inference_mode():
        return llm.model(ids).logits[0, -1].float().log_softmax(-1)


def test_identity_and_context(llm):
    assert llm.identity.startswith("transformers:SmolLM2-135M-Instruct@sha256:")
    assert len(llm.identity.split("sha256:")[1].split("|")[0]) == 64
    assert llm.context_length == 8192
    assert llm.count_tokens(CAPITAL) > 10


def test_greedy_generation_batched_equals_single(llm):
    params = GenerationParams(max_tokens=8)
    batched = llm.generate([CAPITAL, HELLO, JUDGE], params)
    assert "paris" in batched[0].text.lower()
    assert all(c.completion_tokens >= 1 and c.prompt_tokens == llm.count_tokens(ch)
               for c, ch in zip(batched, [CAPITAL, HELLO, JUDGE], strict=True))
    single = llm._generate([HELLO], params)[0]  # the backend alone, unpadded, bypassing the cache
    assert single.text == batched[1].text


def test_stop_and_length(llm):
    out = llm.generate([CAPITAL], GenerationParams(max_tokens=3, stop=("Paris",)))[0]
    assert "Paris" not in out.text and out.completion_tokens <= 3


def test_choice_logprobs_are_probabilities_over_variants(llm):
    got = llm.choice_logprobs([JUDGE, CAPITAL, HELLO], ["A", "B"])
    for d in got:
        assert set(d) == {"A", "B"} and all(v < 0 for v in d.values())
        assert 0 < sum(math.exp(v) for v in d.values()) <= 1 + 1e-6
    # independent check: logsumexp of every single-token variant from an unpadded forward pass
    lp = direct_next_logprobs(llm, JUDGE)
    for choice in ("A", "B"):
        ids = {tuple(llm.tokenizer(v, add_special_tokens=False).input_ids) for v in choice_variants(["A", "B"])[choice]}
        assert all(len(i) == 1 for i in ids) and len(ids) >= 4  # "A", " A", "a", " a"
        assert got[0][choice] == pytest.approx(logsumexp(float(lp[i[0]]) for i in ids), abs=1e-4)
    assert got[0]["A"] > got[0]["B"]  # the model knows Paris


def test_multi_token_choices_scored_by_full_sequence(llm):
    short = MULTI
    choices = ["Response A", "Response B"]
    got = llm.choice_logprobs([short, HELLO], choices)
    tok = llm.tokenizer
    prompt = tok(llm.render(short), add_special_tokens=False).input_ids
    # independent check: every variant's full token sequence scored by its own unpadded forward pass
    for choice in choices:
        seqs = variant_token_ids(choices, lambda v: tok(v, add_special_tokens=False).input_ids)[choice]
        assert any(len(s) > 1 for s in seqs)
        totals = []
        for seq in seqs:
            with torch.inference_mode():
                lp = llm.model(torch.tensor([prompt + list(seq)])).logits[0].float().log_softmax(-1)
            totals.append(sum(float(lp[len(prompt) - 1 + j, t]) for j, t in enumerate(seq)))
        assert got[0][choice] == pytest.approx(logsumexp(totals), abs=1e-4)
    for d in got:
        assert math.exp(d["Response A"]) + math.exp(d["Response B"]) <= 1 + 1e-6


def test_real_prompt_too_long_is_fitted(cache_dir):
    small = make_llm("transformers", cache_dir=str(cache_dir), max_model_len=96)
    history = [Message("user" if i % 2 == 0 else "assistant", f"Old turn {i}: " + "blah " * 20) for i in range(6)]
    chat = [JUDGE[0], *history, JUDGE[1]]
    out = small.choice_logprobs([chat], ["A", "B"])[0]
    assert set(out) == {"A", "B"} and small.usage.truncated_prompts == 1
    comp = small.generate([chat], GenerationParams(max_tokens=8))[0]
    assert comp.prompt_truncated and comp.prompt_tokens <= 96 - 8


def test_cache_hits_across_processes(llm, cache_dir):
    first = llm.choice_logprobs([JUDGE, CAPITAL], ["A", "B"])
    child = (
        "import json; from personalrewardbench.llm import make_llm; from personalrewardbench.data.schema import Message\n"
        f"chats = [[Message(**m) for m in c] for c in json.loads({json.dumps(json.dumps([[m.to_dict() for m in c] for c in (JUDGE, CAPITAL)]))})]\n"
        f"llm = make_llm('transformers', cache_dir={str(cache_dir)!r})\n"
        "out = llm.choice_logprobs(chats, ['A', 'B'])\n"
        "print(json.dumps({'out': out, 'hits': llm.usage.cache_hits, 'identity': llm.identity}))\n"
    )
    res = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=300, check=True)
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["hits"] == 2 and got["identity"] == llm.identity
    assert got["out"] == first


def test_different_model_means_different_keys(llm, cache_dir):
    # the same weights as a plain HF folder (what the GGUF was converted to): another identity
    other = make_llm("transformers", llm.model_path, cache_dir=str(cache_dir))
    assert other.identity != llm.identity and other.identity.startswith("transformers:/")
    llm.choice_logprobs([HELLO], ["A", "B"])
    again = other.choice_logprobs([HELLO], ["A", "B"])
    assert other.usage.cache_hits == 0
    assert again[0] == pytest.approx(llm.choice_logprobs([HELLO], ["A", "B"])[0], abs=1e-4)
