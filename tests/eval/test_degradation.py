"""Degradation counters reach results.json and the board: a real default-judge-direct (log-prob judge) run through an
OpenAI-compatible server (a small one on loopback) that gives no log-probabilities."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from personalrewardbench.cli import main
from personalrewardbench.data import save_benchmark
from personalrewardbench.degradation import degradation_flags, degradation_section, llm_counters
from tests.eval.helpers import random_benchmark


class NoLogprobsHandler(BaseHTTPRequestHandler):
    """Chat completions without log-probabilities; answers "First" or "Second" by prompt parity."""

    def log_message(self, *a):  # quiet
        pass

    def _send(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._send({"data": [{"id": "plain-model", "max_model_len": 4096}]})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = "First" if len(json.dumps(body["messages"])) % 2 else "Second"
        self._send({"choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 40, "completion_tokens": 1}})


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), NoLogprobsHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def test_fallbacks_are_counted_in_results_and_marked_on_the_board(server: str, tmp_path: Path, monkeypatch,
                                                                   capsys) -> None:
    monkeypatch.setenv("PRB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("PRB_SEAL_KEY", raising=False)
    bench = random_benchmark(n_users=3, n_test=2, seed=5, name="fallback-bench")
    built = save_benchmark(bench, tmp_path / "bench")
    assert main(["evaluate", "--method", "default-judge-direct", "--dataset", str(built), "--out", str(tmp_path / "results"),
                 "--backend", "openai", "--base-url", server, "--no-cache", "--quiet", "--bootstrap", "200"]) == 0
    printed = capsys.readouterr().out
    res = json.loads(next((tmp_path / "results").rglob("results.json")).read_text())
    deg = res["degradation"]
    n_judgments = 2 * 3 * 2
    assert deg["choice_fallbacks"] == n_judgments  # every choice request fell back to parsing text
    assert deg["llm"]["choice_fallbacks"] == n_judgments  # the LLM layer's own counter, copied as is
    assert deg["llm"]["by_kind.choice.choice_fallbacks"] == n_judgments  # per request kind
    assert deg["judgments"] == {"n_judgments": n_judgments, "n_failed": res["scores"]["n_failed"],
                                "n_ties": res["scores"]["n_ties"], "failed_share": 0.0}
    assert "DEGRADED" in printed and f"{n_judgments} choice fallbacks" in printed
    assert main(["leaderboard", "build", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "site"),
                 "--no-reported", "--no-plots"]) == 0
    row = json.loads((tmp_path / "site" / "leaderboard.json").read_text())["rows"][0]
    assert row["method"] == "default-judge-direct" and f"{n_judgments} choice fallbacks" in row["degraded"]
    index = (tmp_path / "site" / "index.html").read_text()
    assert 'class="badge degraded"' in index
    page = (tmp_path / "site" / "methods" / "default-judge-direct.html").read_text()
    assert "Degradation" in page and f"{n_judgments} choice fallbacks" in page


def test_counters_are_read_generically() -> None:
    class Usage:
        def as_dict(self):
            return {"calls": 5, "seconds": 1.5, "truncated_prompts": 2, "failed_requests": 1, "retries": 3,
                    "extra": {"choice_fallbacks": 4, "calls": 9, "per_kind": {"refused_requests": 1}, "note": "x"}}

    class LLM:
        usage = Usage()

    got = llm_counters(LLM())
    assert got == {"truncated_prompts": 2, "failed_requests": 1, "retries": 3, "choice_fallbacks": 4,
                   "extra.calls": 9, "per_kind.refused_requests": 1}
    sec = degradation_section(got, {"judge": {"choice_fallback": 6}, "personas": 12},
                              {"n_judgments": 200, "n_failed": 3, "n_ties": 1})
    assert (sec["choice_fallbacks"], sec["truncated_prompts"], sec["refused_requests"]) == (6, 2, 1)
    assert sec["method"] == {"judge.choice_fallback": 6, "personas": 12}
    flags = degradation_flags({"degradation": sec, "scores": {"n_judgments": 200, "n_failed": 3}})
    assert len(flags) == 2 and "3 of 200 judgments failed (1.5%" in flags[1]
    # the legacy name alone, and exactly 1% failed (not over the mark)
    assert degradation_flags({"degradation": {"llm": {"choice_fallback": 1}},
                              "scores": {"n_judgments": 100, "n_failed": 1}}) == [
        "1 choice fallback (answers parsed from text: the server gave no log-probabilities)"]
    assert degradation_flags({"degradation": {}, "scores": {"n_judgments": 100, "n_failed": 1}}) == []


def test_answers_from_another_model_mark_the_row() -> None:
    flags = degradation_flags({"degradation": {"llm": {"model_mismatches": 16, "other_models": {"gpt-evil": 16}}},
                               "scores": {"n_judgments": 32, "n_failed": 0}})
    assert flags == ["16 answers naming another model than the one asked (the run's model identity may not name "
                     "what answered)"]
    sec = degradation_section({"model_mismatches": 1}, {}, {"n_judgments": 2, "n_failed": 0})
    assert sec["model_mismatches"] == 1
    assert degradation_flags({"degradation": {"llm": {"model_mismatches": 0}}, "scores": {"n_judgments": 2}}) == []
