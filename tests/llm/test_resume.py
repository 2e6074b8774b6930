"""A run killed half-way resumes from the cache: every finished batch was committed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from personalrewardbench.data.schema import Message
from personalrewardbench.llm import ScriptedLLM
from personalrewardbench.llm.cache import RequestCache

N = 120
CHILD = """
import sys, time
from personalrewardbench.data.schema import Message
from personalrewardbench.llm import ScriptedLLM

def slow(chat, params):
    time.sleep(0.02)
    return "answer to " + chat[-1].content

llm = ScriptedLLM(slow, identity="resume-test", use_cache=True, cache_dir=sys.argv[1], batch_size=5)
llm.generate([[Message("user", f"question {i}")] for i in range(int(sys.argv[2]))])
print("finished")
"""


def test_killed_run_resumes_from_cache(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), str(N)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    done_at_kill = 0
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if (tmp_path / "requests.sqlite3").exists():
                done_at_kill = len(RequestCache(tmp_path))
                if done_at_kill >= 20:
                    break
            time.sleep(0.05)
        assert proc.poll() is None, "the child finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    kept = len(RequestCache(tmp_path))
    assert 20 <= kept < N and kept % 5 == 0  # whole batches, committed as they finished

    computed = []

    def record(chat, params):
        computed.append(chat[-1].content)
        return "answer to " + chat[-1].content

    llm = ScriptedLLM(record, identity="resume-test", use_cache=True, cache_dir=tmp_path, batch_size=5)
    out = llm.generate([[Message("user", f"question {i}")] for i in range(N)])
    assert [c.text for c in out] == [f"answer to question {i}" for i in range(N)]
    assert llm.usage.cache_hits == kept and len(computed) == N - kept
    assert sum(c.cached for c in out) == kept
    json.dumps(llm.usage.as_dict())  # accounting stays serializable for results.json
