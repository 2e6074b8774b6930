"""bench_vs_reference.py end to end against a scripted OpenAI-shaped server on loopback.

The server answers every DSPy prompt in the reference's own output format (it
reads the field names the prompt asks for) and every other prompt in ours, so
both fits complete and both predict paths run: the reference package's own
``fit`` and ``evaluate`` in its venv, ours through ``prb evaluate``. The answers
are scripted (always "First"): this checks the plumbing, the counting and the
phase reading, not any figure. The real server path is what the benchmark
itself runs (see README-vs-reference.md).

Needs the reference's venv (synthesizeme 0.0.11a1, dspy 2.6): $PRB_REF_VENV or
.venv-ref, which ``scripts/setup test`` makes (see tests/bench/reference_venv.py).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.bench.reference_venv import REF_VENV, reference_python
from tests.conftest import REPO

pytestmark = pytest.mark.slow
FIELD = re.compile(r"`\[\[ ## (\w+) ## \]\]`")
VALUES = {"reasoning": "The person seems to like the shorter summary.", "preference": "First",
          "synthesized_persona": "Prefers short, direct summaries that keep the key facts."}


def scripted_reply(messages: list[dict]) -> str:
    last = str(messages[-1]["content"])
    fields = [f for f in FIELD.findall(last) if f != "completed"]
    if fields:  # a DSPy ChatAdapter prompt: answer each asked-for field in its section format
        return "\n\n".join(f"[[ ## {f} ## ]]\n{VALUES.get(f, 'x')}" for f in fields) + "\n\n[[ ## completed ## ]]"
    if "write the persona" in last.lower():  # ours' persona writer
        return "Reasoning: the chosen summaries are short.\nPersona: " + VALUES["synthesized_persona"]
    return "Reasoning: likes short answers.\nPreference: [[First]]"


class _Server(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, obj):
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._send({"data": [{"id": "scripted", "max_model_len": 8192}]})

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["content-length"])))
        text = scripted_reply(req["messages"])
        size = sum(len(str(m["content"])) for m in req["messages"]) // 4
        self._send({"choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": size, "completion_tokens": len(text) // 4}})


def test_both_sides_run_and_are_counted(tmp_path):
    reference_python()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    out = tmp_path / "run"
    try:
        run = subprocess.run(
            [sys.executable, str(REPO / "scripts" / "bench" / "bench_vs_reference.py"), "--base-url",
             f"http://127.0.0.1:{srv.server_address[1]}/v1", "--ref-venv", str(REF_VENV), "--users", "1",
             "--fit-pairs", "6", "--test-pairs", "2", "--candidates", "1", "--max-tokens", "64", "--out", str(out)],
            capture_output=True, text=True, timeout=900)
    finally:
        srv.shutdown()
        srv.server_close()
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    ref, ours = report["summary"]["reference"], report["summary"]["ours"]
    assert ref["fitted"] == 1 and ours["fitted"] == 1, (ref, ours)
    # 2 test pairs, both orders; the scripted judge always says First: right on the chosen-first half
    assert ref["judgments"] == ours["judgments"] == 4
    assert ref["correct"] == ours["correct"] == 2 and ref["failed_judgments"] == ours["failed_judgments"] == 0
    phases = report["phases"]
    for side in ("reference", "ours"):
        assert report["requests"][side]["requests"] > 0
        for phase in ("bootstrap", "search 1", "persona", "search 2", "predict"):
            assert phases[phase][side]["requests"] > 0, (phase, side)
        assert phases["predict"][side]["judgments"] == 4
    assert "users whose fit completed" in run.stdout and "[predict]" in run.stdout
