"""bench_vs_reference.py's parts: the counting proxy, the phase reading, the users, the program shortening.

The proxy runs against a small OpenAI-shaped server on loopback that this test
starts; the phase reading gets hand-made request records whose phases are
known by construction; the users come from the real summarize-from-feedback
comparisons, checked against a plain count of the file.
"""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "scripts" / "bench"))

from vsref_phases import KnownPair, busy_seconds, classify, phase_table, shared_prefix_tokens  # noqa: E402
from vsref_proxy import CountingProxy, read_log, totals  # noqa: E402
from vsref_reference_side import shorten_program  # noqa: E402
from vsref_setup import SetupError, summarize_users  # noqa: E402


class _Upstream(BaseHTTPRequestHandler):
    """Answers /v1/models and /v1/chat/completions; usage = (number of messages * 10, 3)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._send(200, {"data": [{"id": "m", "max_model_len": 4096}]})

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["content-length"])))
        if req.get("model") == "refuse":
            self._send(400, {"error": "no"})
            return
        n = len(req["messages"])
        self._send(200, {"choices": [{"message": {"content": f"reply to {n}"}, "finish_reason": "length"}],
                         "usage": {"prompt_tokens": 10 * n, "completion_tokens": 3}})


@pytest.fixture()
def upstream():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()
    srv.server_close()


def test_proxy_forwards_and_counts_per_side(upstream, tmp_path):
    proxy = CountingProxy(upstream, tmp_path / "log.jsonl")
    url = proxy.start()
    try:
        assert httpx.get(url + "/models").json()["data"][0]["id"] == "m"
        msg = {"role": "user", "content": "hi"}
        proxy.side = "a"
        for n in (1, 3):
            r = httpx.post(url + "/chat/completions", json={"model": "m", "messages": [msg] * n, "temperature": 0.5})
            assert r.json()["choices"][0]["message"]["content"] == f"reply to {n}"
        proxy.side = "b"
        assert httpx.post(url + "/chat/completions", json={"model": "refuse", "messages": [msg]}).status_code == 400
    finally:
        proxy.stop()
    a = totals(r for r in proxy.records if r["side"] == "a")
    assert a == {"requests": 2, "failed_requests": 0, "prompt_tokens": 40, "completion_tokens": 6, "longest_prompt": 30}
    b = totals(r for r in proxy.records if r["side"] == "b")
    assert b["requests"] == 1 and b["failed_requests"] == 1 and b["prompt_tokens"] == 0
    logged = read_log(tmp_path / "log.jsonl")
    assert len(logged) == 3 and logged[0]["params"] == {"temperature": 0.5}
    assert logged[1]["reply"] == "reply to 3" and logged[1]["finish_reason"] == "length"


def test_proxy_reports_an_unreachable_upstream_as_502(tmp_path):
    proxy = CountingProxy("http://127.0.0.1:9/v1")
    url = proxy.start()
    try:
        r = httpx.post(url + "/chat/completions", json={"model": "m", "messages": []})
    finally:
        proxy.stop()
    assert r.status_code == 502 and "upstream failed" in r.json()["error"]["message"]
    assert totals(proxy.records)["failed_requests"] == 1


PAIRS = [KnownPair("t1", "u1", "train", "CHOSEN-T1", "REJECTED-T1"),
         KnownPair("v1", "u1", "val", "CHOSEN-V1", "REJECTED-V1"),
         KnownPair("x1", "u1", "test", "CHOSEN-X1", "REJECTED-X1"),
         KnownPair("t2", "u2", "train", "CHOSEN-T2", "REJECTED-T2")]


def _rec(side, t, system, last, reply="Preference: [[First]]", tokens=100, temperature=0.0):
    return {"side": side, "t_start": t, "t_end": t + 1, "status": 200, "prompt_tokens": tokens,
            "completion_tokens": 5, "finish_reason": "stop", "reply": reply, "params": {"temperature": temperature},
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": last}]}


def test_phases_read_from_the_requests():
    persona = "This person likes short and direct summaries of long posts."
    recs = [
        _rec("s", 0, "JUDGE", "CHOSEN-T1 vs REJECTED-T1"),                      # bootstrap
        _rec("s", 1, "JUDGE", "REJECTED-V1 vs CHOSEN-V1"),                      # search 1, chosen second
        _rec("s", 2, "JUDGE", "CHOSEN-T2 vs REJECTED-T2"),                      # u2 bootstrap
        _rec("s", 3, "WRITER", "past: CHOSEN-T1 REJECTED-T1", reply="Persona: " + persona),  # one pair: by its reply
        _rec("s", 4, "JUDGE with " + persona, "CHOSEN-T1 vs REJECTED-T1"),      # u1 after its persona
        _rec("s", 5, "JUDGE with " + persona, "CHOSEN-V1 vs REJECTED-V1"),
        _rec("s", 5.5, "JUDGE", "CHOSEN-T2 vs REJECTED-T2"),                    # u2 has no persona request yet ...
        _rec("s", 6, "W", "[[ ## past_judgements ## ]] CHOSEN-T2 REJECTED-T2"),  # ... u2's (DSPy marker)
        _rec("s", 7, "JUDGE with " + persona, "CHOSEN-X1 vs REJECTED-X1"),      # predict
        _rec("r", 0, "J", "nothing known here"),                                # no pair: persona writer
    ]
    got = classify(recs, PAIRS)
    phases = [(r["side"], r["t_start"], r["phase"], r["order"]) for r in got]
    assert phases == [
        ("s", 0, "bootstrap", "chosen-first"), ("r", 0, "persona", None), ("s", 1, "search 1", "chosen-second"),
        ("s", 2, "bootstrap", "chosen-first"), ("s", 3, "persona", None), ("s", 4, "bootstrap 2", "chosen-first"),
        ("s", 5, "search 2", "chosen-first"), ("s", 5.5, "bootstrap", "chosen-first"), ("s", 6, "persona", None),
        ("s", 7, "predict", "chosen-first")]
    assert got[4]["user_id"] == "u1" and got[8]["user_id"] == "u2"
    table = phase_table(got)
    assert table["bootstrap"]["s"]["requests"] == 3 and table["bootstrap"]["s"]["judgments"] == 2
    assert table["bootstrap"]["s"]["identical_repeats"] == 1  # u2's train pair, sent twice alike
    assert table["persona"]["s"]["requests"] == 2 and table["persona"]["r"]["requests"] == 1


def test_judge_replies_that_end_up_in_a_persona_stay_judgments():
    same = "Persona: short answers. Preference: [[First]]"  # every reply alike, and the persona quotes it
    recs = [_rec("s", 0, "J", "CHOSEN-T1 vs REJECTED-T1", reply=same),
            _rec("s", 1, "J", "CHOSEN-V1 vs REJECTED-V1", reply=same),
            _rec("s", 2, "W", "CHOSEN-T1 REJECTED-T1 CHOSEN-V1 REJECTED-V1", reply=same),
            _rec("s", 3, "J with " + same, "CHOSEN-X1 vs REJECTED-X1", reply=same)]
    assert [r["phase"] for r in classify(recs, PAIRS)] == ["bootstrap", "search 1", "persona", "predict"]


def test_persona_request_without_pairs_is_placed_by_the_users_fit_window():
    recs = [_rec("r", 10, "J", "CHOSEN-T1 vs REJECTED-T1"), _rec("r", 11, "W", "(no judgments)"),
            _rec("r", 12, "J2", "CHOSEN-V1 vs REJECTED-V1"), _rec("r", 21, "J", "CHOSEN-T2 vs REJECTED-T2")]
    got = classify(recs, PAIRS, windows={("r", "u1"): [(9, 15)], ("r", "u2"): [(20, 30)]})
    assert [r["phase"] for r in got] == ["bootstrap", "persona", "search 2", "bootstrap"]
    assert got[1]["user_id"] == "u1"


def test_resamples_and_identical_repeats_are_told_apart():
    recs = [_rec("s", 0, "J", "CHOSEN-V1 vs REJECTED-V1"), _rec("s", 1, "J", "CHOSEN-V1 vs REJECTED-V1"),
            _rec("s", 2, "J", "CHOSEN-V1 vs REJECTED-V1", temperature=0.7)]
    row = phase_table(classify(recs, PAIRS))["search 1"]["s"]
    assert (row["identical_repeats"], row["resamples"], row["sampled_requests"], row["judgments"]) == (1, 1, 1, 1)


def test_shared_prefix_tokens_and_busy_seconds_by_hand():
    a = {"messages": [{"role": "user", "content": "abcdef"}], "prompt_tokens": 10}
    b = {"messages": [{"role": "user", "content": "abcxyz"}], "prompt_tokens": 22}
    # rendered "user\x01abcdef" / "user\x01abcxyz": 11 characters, 8 in common ("user\x01abc")
    assert shared_prefix_tokens([a, b]) == [0.0, pytest.approx(22 * 8 / 11)]
    assert busy_seconds([(0, 2), (1, 3), (5, 6), (5.5, 5.7)]) == pytest.approx(4.0)


def test_users_from_the_real_comparisons(summarize_dir):
    counts = Counter(json.loads(line)["worker"] for line in (summarize_dir / "comparisons" / "batch18.json").open())
    want = sorted((w for w, n in counts.items() if n >= 16), key=lambda w: (-counts[w], w))[:4]
    rows, info = summarize_users(summarize_dir / "comparisons", n_users=4, n_fit=12, n_test=4, train_ratio=0.7, seed=0)
    assert info["users"] == want
    per = Counter((r["user_id"], r["split"]) for r in rows)
    assert all(per[(u, "train")] == 8 and per[(u, "val")] == 4 and per[(u, "test")] == 4 for u in want)
    assert all(isinstance(r["flip"], bool) for r in rows) and len({r["conversation_id"] for r in rows}) == 64
    with pytest.raises(SetupError, match="have >= 1000 comparisons"):
        summarize_users(summarize_dir / "comparisons", n_users=4, n_fit=990, n_test=10, train_ratio=0.7, seed=0)


def test_rows_load_as_a_benchmark_with_the_same_split(summarize_dir, tmp_path):
    from personalrewardbench.data import load_benchmark

    rows, _ = summarize_users(summarize_dir / "comparisons", n_users=2, n_fit=6, n_test=2, train_ratio=0.7, seed=3)
    path = tmp_path / "users.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bench = load_benchmark(path)
    got = Counter((p.user_id, p.split, p.meta["flip"]) for p in bench.pairs)
    assert got == Counter((r["user_id"], r["split"], r["flip"]) for r in rows)


def test_persona_program_keeps_its_shortest_examples_in_order():
    demos = [{"past_judgements": "x" * n, "synthesized_persona": "p"} for n in (50, 10, 30, 10)]
    program = {"synthesize.predict": {"demos": demos, "signature": {"instructions": "I"}}, "metadata": {}}
    short, info = shorten_program(program, 2)
    assert short["synthesize.predict"]["demos"] == [demos[1], demos[3]]
    assert short["synthesize.predict"]["signature"] == {"instructions": "I"} and len(program["synthesize.predict"]["demos"]) == 4
    assert info["examples_kept"] == [1, 3] and info["examples_shipped"] == 4
    with pytest.raises(ValueError, match="no predictor"):
        shorten_program({"metadata": {}}, 1)


def test_common_phase_table_per_user_over_the_phases_both_sides_reached():
    from bench_vs_reference import common_phase_table

    def fig(users, busy, requests):
        return {"users": users, "busy_seconds": busy, "requests": requests, "prompt_tokens": 10 * requests,
                "completion_tokens": requests}

    phases = {"bootstrap": {"reference": fig(2, 40.0, 20), "ours": fig(2, 10.0, 8)},
              "search 1": {"reference": fig(2, 60.0, 30), "ours": fig(2, 10.0, 12)},
              "persona": {"reference": fig(2, 20.0, 4), "ours": fig(2, 4.0, 2)},
              "search 2": {"reference": fig(1, 30.0, 10), "ours": fig(2, 9.0, 12)},  # the reference: one user
              "predict": {"ours": fig(2, 3.0, 8)}}
    text = common_phase_table(phases, 2)
    assert "(bootstrap, search 1, persona)" in text
    rows = {line[:34].strip(): line[34:].split() for line in text.splitlines()[2:]}
    # reference (40 + 60 + 20) / 2 = 60 s, ours (10 + 10 + 4) / 2 = 12 s; requests (20+30+4)/2 = 27, (8+12+2)/2 = 11
    assert rows["seconds in flight per user"] == ["60.0", "12.0", "5.00"]
    assert rows["requests per user"] == ["27.0", "11.0", "2.45"]
    assert common_phase_table({"bootstrap": {"reference": fig(1, 1.0, 1), "ours": fig(2, 1.0, 1)}}, 2) is None


def test_concurrency_replay_reads_a_proxy_log_and_salts_each_trial(tmp_path):
    from bench_openai_concurrency import salted, workload

    from personalrewardbench.data.schema import Message

    log = tmp_path / "requests.jsonl"
    recs = [{"side": "ours", "status": 200, "messages": [{"role": "system", "content": "S"},
                                                          {"role": "user", "content": "q1"}],
             "params": {"max_tokens": 64, "temperature": 0.0, "stop": ["]]"]}},
            {"side": "reference", "status": 200, "messages": [{"role": "user", "content": "r"}], "params": {}},
            {"side": "ours", "status": 400, "messages": [{"role": "user", "content": "refused"}], "params": {}},
            {"side": "ours", "status": 200, "messages": [{"role": "user", "content": "q2"}],
             "params": {"max_tokens": 8, "stop": "."}}]
    log.write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"torn')
    work = workload(log, "ours")
    assert [c[-1].content for c, _ in work] == ["q1", "q2"]
    assert [(p.max_tokens, p.stop) for _, p in work] == [(64, ("]]",)), (8, (".",))]
    assert salted(work[0][0], "t1") == [Message("system", "[t1] S"), Message("user", "q1")]
    assert salted(work[1][0], "t1") == [Message("system", "[t1]"), Message("user", "q2")]
