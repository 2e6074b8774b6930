"""Hostile submissions, one per kind of attack, scored in the real sandbox: each attack fails and is
reported, and nothing it does changes the harness, the files it will trust later, or other scores.

The fixture ``fixtures/hostile`` holds one variant per attack (see its adapter). Where an attack
hunts for labels it answers 1/0 for the queries whose order it found and 0.5 (a tie, scored wrong)
otherwise, so an accuracy of exactly 0 with every judgment a tie means it found nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from personalrewardbench.data import save_benchmark
from personalrewardbench.evaluate import run_evaluation
from personalrewardbench.methods import MethodEnv
from personalrewardbench.submissions.checks import SandboxError
from personalrewardbench.submissions.limits import SandboxLimits
from personalrewardbench.submissions.report import markdown_summary
from personalrewardbench.submissions.sandbox import SandboxedMethod
from personalrewardbench.submissions.scoring import score_submission
from tests.conftest import make_tiny_benchmark
from tests.submissions.conftest import FIXTURES, run_method
from tests.submissions.unprivileged import python_paths, unprivileged_command

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")

HOSTILE = FIXTURES / "hostile"
REPO = Path(__file__).resolve().parents[2]
ESCAPES = ("append", "remount", "mount", "unshare", "setuid", "chroot", "write /proc/sys")


def _score(variant: str, out: Path, bench=None, limits: SandboxLimits | None = None):
    [outcome] = score_submission(HOSTILE, bench or make_tiny_benchmark(), out, names=[f"hostile-{variant}"],
                                 limits=limits or SandboxLimits(time_s=120, memory_mb=1024), resamples=50,
                                 show_progress=False)
    return outcome


def _report(outcome) -> dict:
    return json.loads(json.loads((outcome.run_dir / "artifacts.json").read_text())["report"])


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- 1. reading its folder and any results ------------------------------------------------------------


def test_results_in_its_folder_or_of_earlier_runs_are_out_of_reach(tmp_path):
    folder = shutil.copytree(HOSTILE, tmp_path / "hostile")
    out = tmp_path / "out"
    bench = make_tiny_benchmark()
    # an honest sibling is scored first (its answer key lands in out/), and a legacy results/ folder
    # inside the submission holds a real answer key too
    [first] = score_submission(folder, bench, out, names=["hostile"], resamples=50, show_progress=False)
    assert first.status == "ok"
    legacy = folder / "results" / "tiny" / "hostile" / "old-run"
    shutil.copytree(first.run_dir, legacy)
    for _ in range(2):  # a rerun could also read the previous run's files
        [o] = score_submission(folder, bench, out, names=["hostile-read-results"], resamples=50,
                               show_progress=False)
        assert o.status == "ok", o.error
        report = _report(o)
        assert report["labels_found"] == 0 and not [p for p in report["files_seen"]
                                                    if p.endswith(("predictions.jsonl", "query-key.json"))]
        assert o.results["scores"]["accuracy"] == 0.0 and o.results["scores"]["n_ties"] == 18
    assert report["cwd_entries"] == ["prb-cache"] and report["cwd"] == "/tmp/work"  # its own cache dir only


# ---- 2. rebuilding query ids from everything it is given -----------------------------------------------


def test_query_ids_cannot_be_rebuilt_from_what_the_method_is_given(tmp_path):
    bench = make_tiny_benchmark()
    # worst case: it also knows the benchmark's content hash (printed in every results.json) and the seed
    with SandboxedMethod(HOSTILE, "hostile-rebuild-ids", config={"content_hash": bench.content_hash}) as m:
        res = run_evaluation(m, bench, MethodEnv(seed=0, show_progress=False), tmp_path / "run", resamples=50,
                             show_progress=False)
    report = json.loads(json.loads((tmp_path / "run" / "artifacts.json").read_text())["report"])
    assert report["candidates"] > 1000 and report["hits"] == 0
    assert res["scores"]["accuracy"] == 0.0 and res["scores"]["n_ties"] == res["scores"]["n_judgments"] == 18


# ---- 3. remounting or writing outside its snapshot, as root and as a non-root user ---------------------


def _assert_escape_failed(report: dict, target: str) -> None:
    tried = {k: v for k, v in report.items() if k.startswith(ESCAPES)}
    assert len(tried) >= 12, report
    assert all(v.startswith("error") for v in tried.values()), tried
    assert "FileNotFoundError" in report[f"append target:{target}"]  # the harness's files are not even visible
    assert report["CapEff"] == "0000000000000000" and report["NoNewPrivs"] == "1" and report["uid"] == 65534


def test_escape_attempts_fail_under_a_root_harness(tmp_path):
    watched = [HOSTILE / "adapter.py", REPO / "personalrewardbench" / "runs.py"]
    before = [_sha(p) for p in watched]
    target = tmp_path / "results.json"
    target.write_text("{}")
    with SandboxedMethod(HOSTILE, "hostile-escape", config={"targets": [str(target)]}) as m:
        run_method(m, make_tiny_benchmark())
        report = json.loads(m.artifacts()["report"])
    _assert_escape_failed(report, str(target))
    assert [_sha(p) for p in watched] == before and target.read_text() == "{}"


UNPRIVILEGED_SCRIPT = """
import json, os, sys, tempfile
from personalrewardbench.submissions import SandboxedMethod, SandboxLimits, score_submission
from tests.conftest import make_tiny_benchmark
from tests.submissions.conftest import run_method
with SandboxedMethod(sys.argv[1], "hostile-escape", config={"targets": [sys.argv[2]]}) as m:
    run_method(m, make_tiny_benchmark())
    report = json.loads(m.artifacts()["report"])
    notes = m.usage()["sandbox"]["notes"]
limits = {"memory-split": SandboxLimits(time_s=60, memory_mb=256),
          "tmp-fill": SandboxLimits(time_s=60, memory_mb=300, tmp_mb=256)}
kinds = {v: score_submission(sys.argv[1], make_tiny_benchmark(), tempfile.mkdtemp(), names=[f"hostile-{v}"],
                             limits=lim, resamples=20, show_progress=False)[0].kind for v, lim in limits.items()}
print(json.dumps({"report": report, "harness_uid": os.getuid(), "notes": notes, "kinds": kinds}))
"""


def test_escape_attempts_fail_and_limits_hold_under_a_non_root_harness(tmp_path):
    work = Path(tempfile.mkdtemp(prefix="prb-unpriv-"))
    try:
        os.chmod(work, 0o777)
        target = work / "results.json"
        target.write_text("{}")
        os.chmod(target, 0o666)
        cmd, why = unprivileged_command([sys.executable, "-B", "-c", UNPRIVILEGED_SCRIPT, str(HOSTILE), str(target)],
                                        python_paths() + [str(REPO)], scratch=str(work))
        if cmd is None:
            print(f"cannot run the harness as a non-root user here: {why}")
            pytest.skip(f"cannot run the harness as a non-root user here: {why}")
        watched = [HOSTILE / "adapter.py", REPO / "personalrewardbench" / "runs.py"]
        before = [_sha(p) for p in watched]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work), "TMPDIR": str(work),
               "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1", "HF_HUB_OFFLINE": "1",
               # every run needs a usable seal key from the start; a key file cannot live under work/, which
               # holds a results.json (the target)
               "PRB_SEAL_KEY": "unprivileged-harness-" + "k" * 32}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(work), timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert out["harness_uid"] != 0
        _assert_escape_failed(out["report"], str(target))
        assert out["kinds"] == {"memory-split": "memory", "tmp-fill": "memory"}  # limits hold without root too
        assert [_sha(p) for p in watched] == before and target.read_text() == "{}"
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---- 4. symlinked files ----------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["asset", "submission.toml", "folder", "nested"])
def test_symlinks_in_a_submission_are_refused(tmp_path, where):
    from personalrewardbench.submissions.template import write_template

    folder = write_template("linky", tmp_path / "subs")
    if where == "asset":
        (folder / "weights.txt").symlink_to("/etc/passwd")
    elif where == "nested":
        (folder / "data").mkdir()
        (folder / "data" / "key").symlink_to(tmp_path)
    elif where == "submission.toml":
        real = tmp_path / "real.toml"
        shutil.move(folder / "submission.toml", real)
        (folder / "submission.toml").symlink_to(real)
    else:
        linked = tmp_path / "subs" / "linked"
        linked.symlink_to(folder)
        folder = linked
    [o] = score_submission(folder, make_tiny_benchmark(), tmp_path / "out", names=["linky"], show_progress=False)
    assert o.failed and o.kind == "invalid" and "symbolic link" in o.error, o.error
    assert not (tmp_path / "out").exists()


# ---- 5. malformed pipe messages --------------------------------------------------------------------------

PIPE = [("pipe-deep", "fit", "protocol", "nested too deeply"),
        ("pipe-bigint", "fit", "protocol", "an integer with 400 digits"),
        ("pipe-huge", "fit", "protocol", "longer than the limit of 67108864 bytes"),
        ("pipe-hello", "start", "protocol", "malformed start-up message"),
        ("pipe-hello-capability", "start", "bad-output", "unknown capabilities 'root'")]


@pytest.mark.parametrize("variant,phase,kind,words", PIPE, ids=[p[0] for p in PIPE])
def test_malformed_pipe_messages_fail_the_adapter_not_the_harness(tmp_path, variant, phase, kind, words):
    o = _score(variant, tmp_path / "out")
    assert o.failed and o.kind == kind, o.error
    assert f"failed during {phase}" in o.error and words in o.error
    assert "partial output discarded" in o.error
    assert not list((tmp_path / "out").rglob("*.json*"))


# ---- 6. limits over the whole process tree --------------------------------------------------------------


def test_memory_split_across_processes_is_stopped(tmp_path):
    t = time.monotonic()
    o = _score("memory-split", tmp_path / "out", limits=SandboxLimits(time_s=120, memory_mb=256))
    assert o.failed and o.kind == "memory", o.error
    assert "memory limit of 256 MiB" in o.error and "process(es)" in o.error
    assert time.monotonic() - t < 60  # stopped by the watchdog, not by the time limit


def test_temporary_files_count_against_memory(tmp_path):
    o = _score("tmp-fill", tmp_path / "out", limits=SandboxLimits(time_s=120, memory_mb=300, tmp_mb=256))
    assert o.failed and o.kind == "memory" and "temporary files" in o.error, o.error


def test_temporary_space_is_capped(tmp_path):
    o = _score("tmp-cap", tmp_path / "out", limits=SandboxLimits(time_s=120, memory_mb=1024, tmp_mb=16))
    assert o.status == "ok", o.error
    report = _report(o)
    assert "No space left on device" in report["tmp"] and "No space left on device" in report["shm"]


def _processes_with(marker: str) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{name}/cmdline").read_bytes():
                    out.append(int(name))
            except OSError:
                pass
    return out


@pytest.mark.parametrize("isolation", ["bwrap", "none"])
def test_a_daemon_does_not_outlive_the_run(tmp_path, isolation):
    marker = f"1000.{secrets.randbelow(10**9):09d}"
    limits = SandboxLimits(time_s=120, isolation=isolation, trust_code=isolation == "none")
    bench = make_tiny_benchmark()
    with SandboxedMethod(HOSTILE, "hostile-daemon", config={"marker": marker}, limits=limits) as m:
        run_method(m, bench)
        deadline = time.monotonic() + 10
        while not _processes_with(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _processes_with(marker), "the daemon should be running during the run"
    deadline = time.monotonic() + 5
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_with(marker) == []


def test_llm_service_time_counts_against_the_time_limit(tmp_path):
    from personalrewardbench.llm.scripted import ScriptedLLM

    def slow(chat, params):
        time.sleep(0.25)
        return "ok"

    llm = ScriptedLLM(generate_fn=slow, identity="slow")
    t = time.monotonic()
    m = SandboxedMethod(HOSTILE, "hostile-slow-llm", limits=SandboxLimits(time_s=5, llm_slice=4))
    try:
        with pytest.raises(SandboxError) as info:
            m.setup(MethodEnv(seed=0, llm=llm, show_progress=False))
            m.fit(make_tiny_benchmark().histories())
            from personalrewardbench.query_keys import make_queries

            m.predict(make_queries(make_tiny_benchmark().pairs_of("test"), 0)[0])
    finally:
        m.close()
    elapsed = time.monotonic() - t
    assert info.value.kind == "timeout" and "LLM service time included" in str(info.value)
    assert elapsed < 5 + 3, elapsed  # its 40 calls of 0.25 s would take 10 s


# ---- 7. nothing the adapter returns lands in the harness's fields; its report stays data ---------------


def test_adapter_cannot_write_the_harness_fields(tmp_path):
    o = _score("forge-usage", tmp_path / "out")
    assert o.status == "ok", o.error
    usage = o.results["method_usage"]
    assert usage["sandbox"]["mode"] == "bwrap" and usage["sandbox"]["uid"] == 65534
    assert "verified by the maintainers" not in json.dumps(usage["sandbox"])
    assert usage["adapter"]["sandbox"]["notes"] == ["verified by the maintainers"]  # kept, under its own key
    assert o.results["method"]["config"]["attack"] == "forge-usage"  # the harness's config wins
    assert o.results["method"]["config"]["extra_key"] == "adapter default"


def test_a_fence_breaking_failure_message_stays_in_its_block(tmp_path):
    markdown_it = pytest.importorskip("markdown_it")
    o = _score("fence", tmp_path / "out")
    assert o.failed and "RuntimeError: boom" in o.error
    md = markdown_summary([o], title="scores")
    html = markdown_it.MarkdownIt("commonmark").enable("table").render(md)
    assert html.count("<h2>") == 1 and "<h2>All checks passed" not in html
    assert html.count("<tr>") == 2  # the header and the one real row
    assert "<img" not in html and "onerror=alert(1)" in html  # escaped text, not an element
    blocks = html.split("<pre><code")[1:]
    assert any("All checks passed" in b and "100.0% [99.0%, 100.0%]" in b for b in blocks)


def test_a_huge_log_is_read_from_its_tail(tmp_path):
    import tracemalloc

    from personalrewardbench.submissions.report import read_log_tail

    o = _score("big-log", tmp_path / "out")
    assert o.failed and "failed after a 100 MiB log" in o.error and "xxxx" in o.error
    assert len(o.error) < 20_000
    log = tmp_path / "big.log"
    with open(log, "wb") as fh:
        for _ in range(100):
            fh.write((b"y" * 1023 + b"\n") * 1024)
        fh.write(b"the last line\n")
    tracemalloc.start()
    tail = read_log_tail(log)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert tail[-1] == "the last line" and peak < 1024 * 1024


# ---- 8. one bad submission never stops the next; the honest score is unchanged --------------------------


def test_honest_score_is_unchanged_next_to_hostile_runs(tmp_path):
    from personalrewardbench.methods import load_method

    bench = make_tiny_benchmark()
    alone = run_evaluation(load_method(str(HOSTILE)), bench, MethodEnv(seed=0, show_progress=False),
                           tmp_path / "alone", resamples=50, show_progress=False)
    outcomes = score_submission(HOSTILE, bench, tmp_path / "out",
                                names=["hostile-pipe-deep", "hostile-fence", "hostile-memory-split", "hostile"],
                                limits=SandboxLimits(time_s=120, memory_mb=256), resamples=50,
                                show_progress=False)
    assert [o.status for o in outcomes] == ["failed", "failed", "failed", "ok"]
    assert outcomes[-1].results["scores"] == alone["scores"]


def test_saved_benchmark_path_is_not_visible(tmp_path):
    bench = make_tiny_benchmark()
    save_benchmark(bench, tmp_path / "bench")
    with SandboxedMethod(HOSTILE, "hostile-escape", config={"targets": [str(tmp_path / "bench" / "pairs.jsonl")]}) \
            as m:
        run_method(m, bench)
        report = json.loads(m.artifacts()["report"])
    assert "FileNotFoundError" in report[f"append target:{tmp_path / 'bench' / 'pairs.jsonl'}"]
