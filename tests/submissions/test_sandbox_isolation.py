"""A malicious adapter hunting for test labels finds nothing in the sandbox.

The canary (``LEAK`` + 16 hex digits, never given to the adapter) sits in every
labeled test pair (id and label metadata), so in the benchmark files and in the
harness's memory, and in the harness's environment. The same adapter run
in-process finds it through each probe, which shows the probes work.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
from pathlib import Path

import pytest

from personalrewardbench.data import save_benchmark
from personalrewardbench.evaluate import make_queries
from personalrewardbench.methods import MethodEnv, load_method
from personalrewardbench.submissions.checks import SandboxError
from personalrewardbench.submissions.limits import SandboxLimits
from personalrewardbench.submissions.sandbox import SandboxedMethod
from tests.submissions.conftest import SNOOP, canary_benchmark

REPO = Path(__file__).resolve().parents[2]
QUERY_FIELDS = ["context", "first", "query_id", "second", "user_id"]


@pytest.fixture
def setting(tmp_path, monkeypatch):
    canary = "LEAK" + secrets.token_hex(8)
    bench = canary_benchmark(canary)
    bench_dir = save_benchmark(bench, tmp_path / "bench")
    monkeypatch.setenv("PRB_TEST_SECRET", canary)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    config = {"paths": [str(bench_dir / "pairs.jsonl"), str(bench_dir / "manifest.json"),
                        str(REPO / "tests" / "conftest.py"), "/etc/shadow"],
              "dirs": [str(bench_dir), str(REPO), str(REPO / "results"), str(Path.home())],
              "harness_pid": os.getpid(), "port": server.getsockname()[1]}
    yield canary, bench, config
    server.close()


def _snoop(method, bench) -> dict:
    method.setup(MethodEnv(seed=0, show_progress=False))
    method.fit(bench.histories())
    queries, _ = make_queries(bench.pairs_of("test"), 0)
    method.predict(queries)
    return json.loads(method.artifacts()["report"])


def _found(report: dict) -> dict[str, list[str]]:
    """probe path -> canaries it found."""
    out: dict[str, list[str]] = {}

    def walk(node, path):
        if isinstance(node, dict):
            if node.get("found"):
                out[path] = node["found"]
            for k, v in node.items():
                walk(v, f"{path}/{k}")

    walk(report, "")
    return out


def test_probes_find_the_canary_when_not_sandboxed(setting):
    canary, bench, config = setting
    report = _snoop(load_method(str(SNOOP), config), bench)
    found = _found(report)
    pid = str(os.getpid())
    # (/proc/<pid>/environ shows a process's environment at exec time, so the variable set by this
    # test shows up there only for processes started later; the memory scan finds it here)
    for probe in ("/environ", f"/files/{config['paths'][0]}", f"/harness/{pid}/mem", "/gc_objects"):
        assert canary in found.get(probe, []), (probe, found)  # (memory may hold other tests' canaries too)
    assert report["network"]["result"].startswith("connected")


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed: apt-get install bubblewrap (scripts/setup test does it where apt runs as root)")
def test_sandboxed_adapter_finds_no_labels(setting):
    canary, bench, config = setting
    with SandboxedMethod(SNOOP, config=config, limits=SandboxLimits(memory_mb=2048)) as m:
        report = _snoop(m, bench)
        sandbox = m.usage()["sandbox"]
    assert _found(report) == {}, report
    assert canary not in json.dumps(report)
    # its arguments: train/val histories and the five label-free query fields only
    assert report["fit_arguments"]["splits"] == ["train", "val"]
    assert report["predict_arguments"]["fields"] == QUERY_FIELDS
    # benchmark files, the repository, results and home are not there at all
    for path in config["paths"][:3]:
        assert report["files"][path]["result"].startswith("error: FileNotFoundError"), path
    assert report["files"]["/etc/shadow"]["result"].startswith("error:")  # system files: no root to read them
    for d in config["dirs"][0], config["dirs"][2]:  # the benchmark folder, results/
        assert report["dirs"][d]["result"].startswith("error: FileNotFoundError"), d
    # the repository holds only what was bound in: the venv, the package, the submission folder
    assert set(report["dirs"][str(REPO)].get("entries", [])) <= {".venv", "personalrewardbench", "tests"}
    # the harness process is invisible (own PID namespace), so its memory and environment cannot be read
    harness = report["harness"].pop(str(config["harness_pid"]))
    assert all(p["result"].startswith("error:") for p in harness.values()), harness
    # what it can see instead is the sandbox's own init process (bubblewrap's reaper): nothing there
    for probes in report["harness"].values():
        assert all(not p["found"] for p in probes.values()), probes
    assert report["all_processes"]["count"] <= 2  # only the sandbox's own processes
    assert report["network"]["result"].startswith("error:")
    assert sandbox["mode"] == "bwrap" and sandbox["uid"] == 65534


def test_no_isolation_is_refused_unless_the_code_is_trusted():
    with pytest.raises(SandboxError, match="--i-trust-this-code") as info:
        SandboxedMethod(SNOOP, limits=SandboxLimits(isolation="none"))
    assert info.value.kind == "isolation"


def test_missing_bubblewrap_is_a_clear_refusal(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name, *a, **k: None)
    with pytest.raises(SandboxError, match="bubblewrap .* is not installed.*apt-get install bubblewrap") as info:
        SandboxedMethod(SNOOP)
    assert info.value.kind == "isolation"


def test_trusted_mode_still_withholds_labels_and_environment(setting):
    canary, bench, config = setting
    with SandboxedMethod(SNOOP, config={**config, "harness_pid": 0},
                         limits=SandboxLimits(isolation="none", trust_code=True)) as m:
        report = _snoop(m, bench)
    found = _found(report)
    for probe in ("/fit_arguments", "/predict_arguments", "/environ", "/argv", "/gc_objects"):
        assert probe not in found, (probe, found)
