"""Red-team review of the sealed scoring (issue 12): new attacks of each kind, in the real sandbox.

Each test expects the SECURE behaviour. The fixture ``fixtures/red-team`` holds one variant per attack
on the sandbox; attacks on the submission format, the registry, the protocol and the report build their
inputs here. See the module's sections for the kinds: limits, LLM service, protocol, submission format,
the harness's own records, the CI job and its report.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import pytest

from personalrewardbench.data import save_benchmark
from personalrewardbench.methods import MethodEnv
from personalrewardbench.submissions.checks import SandboxError
from personalrewardbench.submissions.limits import SandboxLimits
from personalrewardbench.submissions.protocol import ChannelError, decode_message
from personalrewardbench.submissions.report import markdown_summary
from personalrewardbench.submissions.sandbox import SandboxedMethod
from personalrewardbench.submissions.scoring import score_submission
from personalrewardbench.submissions.spec import SubmissionError, validate_folder
from personalrewardbench.submissions.template import write_template
from tests.conftest import make_tiny_benchmark
from tests.submissions.conftest import FIXTURES, MISBEHAVING
from tests.submissions.unprivileged import python_paths, unprivileged_command

RED = FIXTURES / "red-team"
REPO = Path(__file__).resolve().parents[2]
GITHUB_COMMENT_LIMIT = 65536  # characters GitHub accepts in one issue/PR comment body

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")


def _score(variant: str, out: Path, limits: SandboxLimits):
    [outcome] = score_submission(RED, make_tiny_benchmark(), out, names=[f"red-team-{variant}"], limits=limits,
                                 resamples=20, show_progress=False)
    return outcome


def _report(outcome) -> dict:
    return json.loads(json.loads((outcome.run_dir / "artifacts.json").read_text())["report"])


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("score_submissions", REPO / "scripts" / "score_submissions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ci(script, tmp_path: Path, folders: list[Path], dataset: str | None = None) -> tuple[int, str]:
    """scripts/score_submissions.py on explicit folders (as CI runs it), with the length baseline."""
    if dataset is None:
        dataset = str(save_benchmark(make_tiny_benchmark(), tmp_path / "bench"))
    summary = tmp_path / "summary.md"
    rc = script.main([*map(str, folders), "--dataset", dataset, "--baseline", "length",
                      "--baseline-results", str(tmp_path / "base-results"), "--out", str(tmp_path / "ci-results"),
                      "--summary", str(summary), "--bootstrap", "50", "--quiet", "--memory-limit", "512",
                      "--time-limit", "60"])
    return rc, summary.read_text()


# ---- 1. limits: memory the process-tree watchdog cannot see, a fork burst between two polls -------------


def _held(o) -> bool:
    """The hidden memory never escaped the limit: stopped at it, or the call that makes it refused in the sandbox."""
    return o.status == "failed" and (o.kind == "memory" or (
        o.kind == "crash-exception" and "[Errno 1] Operation not permitted" in o.error
        and "the sandbox refuses them: memfd_create, System V shared memory" in o.error))


@needs_bwrap
@pytest.mark.parametrize("variant", ["memfd", "sysv-shm", "socket-hoard", "socket-backlog"])
def test_memory_held_outside_every_process_map_counts_against_the_limit(tmp_path, variant):
    # 300 MiB in anonymous memory files (memfd_create) or System V segments, under a 200 MiB limit: neither is
    # in any process's PSS nor on the sandbox's /tmp or /dev/shm, so a watchdog summing those sees ~20 MiB.
    # Socket queues (socket pairs filled both ways; connections never accepted whose clients closed) are kernel
    # memory too: ~1,000 sockets hold over 200 MiB
    o = _score(variant, tmp_path / "out", SandboxLimits(time_s=60, memory_mb=200))
    held = _report(o) if o.status == "ok" else {}
    assert _held(o), f"{variant}: {o.status} {held} {o.error}"


@needs_bwrap
def test_every_other_way_to_make_the_kernel_hold_memory_is_refused(tmp_path):
    o = _score("kernel-hoard", tmp_path / "out", SandboxLimits(time_s=60, memory_mb=1024))
    assert o.status == "ok", o.error
    report = _report(o)
    assert report and set(report.values()) == {"refused"}, report


@needs_bwrap
def test_the_process_limit_is_never_exceeded_by_a_fork_burst(tmp_path):
    limit = 32
    o = _score("fork-burst", tmp_path / "out", SandboxLimits(time_s=60, memory_mb=2048, max_processes=limit))
    if o.status == "ok":  # forks beyond the limit were refused by the kernel
        report = _report(o)
        assert report["forked"] + 3 <= limit, report
    else:  # stopped: but never before more than the limit were running
        assert o.kind == "processes", o.error
        seen = int(re.search(r"(\d+) processes \(limit", o.error).group(1))
        assert seen <= limit, o.error.splitlines()[0]


UNPRIVILEGED_SCRIPT = """
import json, re, sys, tempfile
from personalrewardbench.submissions import SandboxLimits, score_submission
from tests.conftest import make_tiny_benchmark
def score(v, **limits):
    return score_submission(sys.argv[1], make_tiny_benchmark(), tempfile.mkdtemp(), names=[f"red-team-{v}"],
                            limits=SandboxLimits(time_s=60, **limits), resamples=20, show_progress=False)[0]
def held(o):
    return o.status == "failed" and (o.kind == "memory" or (o.kind == "crash-exception"
                                     and "[Errno 1] Operation not permitted" in o.error))
out = {f"{v} held": held(score(v, memory_mb=200)) for v in ("memfd", "sysv-shm", "socket-hoard", "socket-backlog")}
fork = score("fork-burst", memory_mb=2048, max_processes=32)
seen = re.search(r"(\\d+) processes \\(limit", fork.error or "")
out["fork-burst held"] = fork.status == "ok" or (fork.kind == "processes" and int(seen.group(1)) <= 32)
hoard = score("kernel-hoard", memory_mb=1024)
out["kernel-hoard"] = sorted(set(json.loads(json.loads((hoard.run_dir / "artifacts.json").read_text())["report"])
                                 .values())) if hoard.status == "ok" else hoard.error
print(json.dumps(out))
"""


@needs_bwrap
def test_hidden_memory_and_the_process_limit_hold_under_a_non_root_harness_too():
    work = Path(tempfile.mkdtemp(prefix="prb-unpriv-"))
    try:
        os.chmod(work, 0o777)
        cmd, why = unprivileged_command([sys.executable, "-B", "-c", UNPRIVILEGED_SCRIPT, str(RED)],
                                        python_paths() + [str(REPO)], scratch=str(work))
        if cmd is None:
            pytest.skip(f"cannot run the harness as a non-root user here: {why}")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work), "TMPDIR": str(work),
               "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1", "HF_HUB_OFFLINE": "1"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(work), timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert json.loads(proc.stdout.strip().splitlines()[-1]) == {
            "memfd held": True, "sysv-shm held": True, "socket-hoard held": True, "socket-backlog held": True,
            "fork-burst held": True, "kernel-hoard": ["refused"]}
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---- 2. the LLM service: one request must not outlast the run's wall clock --------------------------------


def _run_llm_attack(variant: str, llm, time_s: float) -> tuple[float, SandboxError | None]:
    t = time.monotonic()
    m = SandboxedMethod(RED, f"red-team-{variant}", limits=SandboxLimits(time_s=time_s, memory_mb=1024))
    err = None
    try:
        m.setup(MethodEnv(seed=0, llm=llm, show_progress=False))
        m.fit(make_tiny_benchmark().histories())
    except SandboxError as exc:
        err = exc
    finally:
        m.close()
    return time.monotonic() - t, err


@needs_bwrap
def test_one_llm_request_scoring_many_answers_stays_within_the_time_limit():
    from personalrewardbench.llm.scripted import ScriptedLLM

    def choice(chat, choices):  # scoring answers costs time per answer (the transformers backend is worse:
        time.sleep(0.001 * len(choices))  # its variant dedup is quadratic; 4,000 answers ran > 590 s there)
        return {c: -1.0 for c in choices}

    elapsed, err = _run_llm_attack("llm-choices", ScriptedLLM(choice_fn=choice, identity="choices"), time_s=3)
    assert elapsed < 3 + 4, f"a 3 s limit ran {elapsed:.1f} s ({err})"


@needs_bwrap
def test_one_large_llm_request_stays_within_the_time_limit():
    from personalrewardbench.llm.scripted import ScriptedLLM

    def slow(chat, params):
        time.sleep(0.02)
        return "ok"

    # one generate request of 400 prompts (0.02 s each: 8 s), under a 2 s limit
    elapsed, err = _run_llm_attack("llm-batch", ScriptedLLM(generate_fn=slow, identity="batch"), time_s=2)
    assert elapsed < 2 + 3, f"a 2 s limit ran {elapsed:.1f} s ({err})"


def test_slices_shrink_to_fit_the_time_left_when_the_backend_cannot_stop_inside_a_batch():
    from personalrewardbench.llm.scripted import ScriptedLLM
    from personalrewardbench.submissions.llm_service import answer_llm

    def slow(chat, params):
        time.sleep(0.01)
        return "ok"

    # one backend batch for the whole slice (as vLLM's offline engine runs it): only the slice size bounds it
    llm = ScriptedLLM(generate_fn=slow, batch_size=100_000)
    chats = [[{"role": "user", "content": f"prompt {i}"}] for i in range(2000)]  # 20 s of work
    pace: dict = {}
    t = time.monotonic()
    with pytest.raises(TimeoutError):
        answer_llm(llm, "generate", {"chats": chats}, deadline=t + 1.0, slice_size=512, pace=pace)
    elapsed = time.monotonic() - t
    assert elapsed < 1.0 + 0.25, f"a 1 s deadline ran {elapsed:.2f} s (one 512-prompt slice is 5 s)"
    assert 0.005 < pace["generate:default"] < 0.1  # the measured pace (10 ms per prompt, plus overhead)
    done = llm.usage.calls
    assert done > 40  # it did use the time: far more than the first probe


@needs_bwrap
def test_one_large_llm_request_stays_within_the_time_limit_on_the_transformers_backend():
    import torch

    from personalrewardbench import Message
    from personalrewardbench.llm import GenerationParams, make_llm

    llm = make_llm("transformers", use_cache=False, progress=False)  # the embedded SmolLM2 (CPU)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a CPU shared with other jobs, one multi-threaded forward pass can stall for seconds
    try:
        llm.generate([[Message("user", "Hi.")]], GenerationParams(max_tokens=2))  # warm (first forward pass)
        # 400 prompts of up to 256 new tokens each: minutes of decoding on a CPU, under a 3 s limit
        elapsed, err = _run_llm_attack("llm-batch", llm, time_s=3)
    finally:
        torch.set_num_threads(threads)
        llm.close()
    assert err is not None and err.kind == "timeout", err
    assert elapsed < 3 + 3, f"a 3 s limit ran {elapsed:.1f} s ({err})"


# ---- 3. the protocol: a message within the size cap must not cost the harness gigabytes -------------------


def test_a_message_of_millions_of_tiny_values_is_refused_before_it_costs_memory():
    # 6 MiB of empty lists: json.loads builds 2M list objects (~50x the bytes; the default 64 MiB cap let one
    # message take 3.2 GiB and 46 s of the harness's CPU)
    line = b'{"id":1,"ok":true,"result":[' + b"[]," * (2 * 1024 * 1024) + b"[]]}"
    tracemalloc.start()
    try:
        try:
            decode_message(line)
        except ChannelError:
            pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * len(line), f"{peak / 2**20:.0f} MiB for a {len(line) / 2**20:.0f} MiB message"


def test_ordinary_messages_still_decode():
    preds = [0.5, 0.7, 0.3, 1, 0] * 20_000
    assert decode_message(json.dumps({"id": 3, "ok": True, "result": preds}).encode())["result"] == preds
    chats = [[{"role": "user", "content": "Hello, world [1], {2}, (3)."}]] * 20_000
    msg = {"op": "llm", "fn": "generate", "args": {"chats": chats}}
    assert decode_message(json.dumps(msg).encode())["args"]["chats"] == chats


# ---- 4. the submission format: a hostile submission.toml is one clear error, and stops no one else ---------


HOSTILE_TOML = {
    "deep nesting": ("config = { x = " + "[" * 100_000 + "]" * 100_000 + " }\n", "nested"),
    "huge integer": ("config = { x = " + "9" * 5000 + " }\n", "integer"),
    "date-time value": ("config = { x = 1979-05-27T07:32:00Z }\n", "[method].config.x"),
    "nan": ("config = { x = nan }\n", "[method].config.x"),
    "int beyond 64 bits": ("config = { x = 123456789012345678901234567890 }\n", "[method].config.x"),
    "deep config": ("config = { x = " + "[" * 80 + "]" * 80 + " }\n", "[method].config.x"),
}


def _bad_folder(parent: Path, case: str) -> Path:
    folder = write_template("bad-toml", parent)
    text = (folder / "submission.toml").read_text()
    line, _ = HOSTILE_TOML[case]
    text = re.sub(r"^config = .*\n", "", text, count=1, flags=re.M).replace("[method]\n", "[method]\n" + line, 1)
    (folder / "submission.toml").write_text(text)
    return folder


@pytest.mark.parametrize("case", list(HOSTILE_TOML))
def test_a_hostile_submission_toml_is_one_clear_error(tmp_path, case):
    folder = _bad_folder(tmp_path, case)
    with pytest.raises(SubmissionError) as info:
        validate_folder(folder)
    assert "submission.toml" in str(info.value) and HOSTILE_TOML[case][1] in str(info.value)


def test_a_huge_submission_toml_is_refused_by_size(tmp_path):
    folder = write_template("big-toml", tmp_path)
    with open(folder / "submission.toml", "a") as fh:
        fh.write("# " + "é" * (1 << 20) + "\n")  # over 1 MiB, cut in the middle of a character at 1 MiB
    with pytest.raises(SubmissionError, match="larger than"):
        validate_folder(folder)


@needs_bwrap
def test_a_hostile_submission_toml_stops_no_other_submission_in_the_ci_job(script, tmp_path):
    bad = _bad_folder(tmp_path / "pr", "deep nesting")
    good = write_template("good-one", tmp_path / "pr")
    rc, report = _ci(script, tmp_path, [bad, good])
    assert rc == 1
    assert "| <code>good-one</code> | tiny | ok |" in report and "stopped early" not in report
    assert "**<code>bad-toml</code> on -: failed** (invalid)" in report


# ---- 5. the registry: a submission never takes a name the harness runs in-process --------------------------


def _named_submission(parent: Path, name: str, variant: str | None = None) -> Path:
    # the template refuses a taken name itself: write a free one, then give the folder the clashing name
    folder = write_template("free-name", parent).rename(parent / name)
    text = (folder / "submission.toml").read_text().replace('name = "free-name"', f'name = "{name}"', 1)
    if variant:
        text += f'\n[variants.{variant}]\nconfig = {{}}\n'
    (folder / "submission.toml").write_text(text)
    return folder


def test_a_submission_cannot_shadow_a_baseline(tmp_path, monkeypatch):
    from personalrewardbench.methods import load_method, resolve_method

    subs = tmp_path / "submissions"
    _named_submission(subs, "length")  # the same name as a baseline
    _named_submission(subs, "embed", variant="logreg")  # a variant's full name, "embed-logreg", is a baseline's
    monkeypatch.setenv("PRB_METHOD_DIRS", os.pathsep.join([str(REPO / "baselines"), str(subs)]))
    for name in ("length", "embed-logreg"):
        assert resolve_method(name).folder == REPO / "baselines" / name
        assert resolve_method(name).tier == "reproduced"
    module = sys.modules[type(load_method("length")).__module__]
    assert Path(module.__file__).resolve().parent == REPO / "baselines" / "length"  # never the submission's code


def test_ci_refuses_a_submission_named_like_a_baseline(script, tmp_path):
    clash = _named_submission(tmp_path / "pr", "length")
    rc, report = _ci(script, tmp_path, [clash])
    assert rc == 1
    assert "**<code>length</code> on -: failed** (invalid)" in report and "baselines/length" in report
    assert not (tmp_path / "ci-results").exists()  # never scored


# ---- 6. the harness's own records: nothing the adapter does removes or rewrites them ------------------------


@needs_bwrap
def test_a_failing_usage_keeps_the_harness_record_of_the_sandbox(tmp_path):
    o = _score("usage-raise", tmp_path / "out", SandboxLimits(time_s=60, memory_mb=1024))
    assert o.status == "ok", o.error
    usage = o.results["method_usage"]
    assert usage["sandbox"]["mode"] == "bwrap" and usage["sandbox"]["limits"]["memory_mb"] == 1024
    assert "is mine now" not in json.dumps(o.results)  # the adapter's text lands in no field the harness owns


# ---- 7. the CI job and its report ------------------------------------------------------------------------


@needs_bwrap
def test_ci_synthetic_labels_cannot_be_regenerated_from_the_package(script, tmp_path):
    regen = shutil.copytree(RED, tmp_path / "pr" / "regen")
    (regen / "submission.toml").write_text(
        (RED / "submission.toml").read_text().split("[variants.")[0].replace('name = "red-team"', 'name = "regen"')
        .replace('config = { attack = "none" }', 'config = { attack = "regen-synthetic" }'))
    rc, report = _ci(script, tmp_path, [regen], dataset="synthetic")
    [run] = (tmp_path / "ci-results").glob("*/regen/*/results.json")
    accuracy = json.loads(run.read_text())["scores"]["accuracy"]
    assert accuracy < 0.9, f"the package's own generator gave it {accuracy:.0%}: {report}"


@needs_bwrap
def test_the_report_fits_one_pull_request_comment(tmp_path):
    [failed] = score_submission(MISBEHAVING, make_tiny_benchmark(), tmp_path / "out", names=["misbehaving-raise-fit"],
                                resamples=20, show_progress=False)
    assert failed.status == "failed"
    # a pull request with many failing variants (each one a real failure report)
    many = [dataclasses.replace(failed, method=f"many-variants-{i:03d}") for i in range(GITHUB_COMMENT_LIMIT //
                                                                                           len(failed.error) + 20)]
    report = markdown_summary(many)
    assert len(report) <= GITHUB_COMMENT_LIMIT, len(report)
    assert all(f"many-variants-{i:03d}" in report for i in range(len(many)))  # every one is still listed
    assert report.count("```") % 2 == 0  # no code fence left open by the cut


@needs_bwrap
def test_ci_compares_with_the_baselines_of_an_installed_harness(script, tmp_path, monkeypatch):
    import personalrewardbench.methods as methods

    # CI installs the harness (pip install ./harness): no baselines/ folder next to the installed package
    monkeypatch.setattr(methods, "__file__", str(tmp_path / "site-packages" / "personalrewardbench" / "methods.py"))
    good = write_template("good-one", tmp_path / "pr")
    rc, report = _ci(script, tmp_path, [good])
    assert "| <code>length</code> |" in report and "scores are shown without paired differences" not in report


@needs_bwrap
def test_a_submission_of_hanging_variants_leaves_time_for_the_next_one(script, tmp_path):
    # a method that hangs until its time limit: under the per-name limit alone, three such names (variants)
    # use the whole job (3 x 3600 s > the workflow's 180 minutes) and the next submission is never scored
    hog = shutil.copytree(MISBEHAVING, tmp_path / "pr" / "aaa-hog")
    (hog / "submission.toml").write_text(
        (MISBEHAVING / "submission.toml").read_text().split("[variants.")[0]
        .replace('name = "misbehaving"', 'name = "aaa-hog"').replace('behavior = "ok"', 'behavior = "hang"'))
    good = write_template("zzz-good", tmp_path / "pr")
    t = time.monotonic()
    summary = tmp_path / "summary.md"
    rc = script.main([str(hog), str(good), "--dataset", str(save_benchmark(make_tiny_benchmark(), tmp_path / "b")),
                      "--baseline", "length", "--baseline-results", str(tmp_path / "base"), "--out",
                      str(tmp_path / "ci"), "--summary", str(summary), "--bootstrap", "50", "--quiet",
                      "--time-limit", "3600", "--job-time-limit", "10"])
    report = summary.read_text()
    assert rc == 1 and time.monotonic() - t < 30
    assert "| <code>zzz-good</code> | tiny | ok |" in report and report.count("(timeout)") == 1


def test_a_path_too_long_for_the_snapshot_is_one_clear_error(tmp_path, monkeypatch):
    import tempfile as tf

    from personalrewardbench.submissions.snapshot import Snapshot

    folder = write_template("long-paths", tmp_path / "s")
    long_tmp = tmp_path / ("t" * 200) / ("t" * 200)  # where the snapshot goes: a longer prefix than the folder's
    long_tmp.mkdir(parents=True)
    monkeypatch.setattr(tf, "tempdir", str(long_tmp))
    depth = (4000 - len(str(folder))) // 201  # the folder's own paths stay under PATH_MAX (4096)
    deep = folder.joinpath(*["a" * 200] * depth)
    deep.mkdir(parents=True)
    (deep / "asset.txt").write_text("x")
    with pytest.raises(SubmissionError, match="cannot be copied into the snapshot"):
        Snapshot(folder)
    assert not list(long_tmp.iterdir())  # nothing left behind


def test_llm_requests_whose_cost_hides_in_their_arguments_are_refused():
    from personalrewardbench.llm.scripted import ScriptedLLM
    from personalrewardbench.submissions.llm_service import answer_llm

    llm, chat = ScriptedLLM(generate_fn=lambda c, p: "ok"), [[{"role": "user", "content": "hi"}]]
    far = time.monotonic() + 60
    with pytest.raises(ValueError, match="stop"):  # checked against every token the backend generates
        answer_llm(llm, "generate", {"chats": chat, "params": {"stop": [f"s{i}" for i in range(100_000)]}}, deadline=far)
    with pytest.raises(ValueError, match="choices"):
        answer_llm(llm, "choice_logprobs", {"chats": chat, "choices": [f"c{i}" for i in range(5000)]}, deadline=far)
    assert answer_llm(llm, "generate", {"chats": chat, "params": {"stop": ["\n"]}}, deadline=far)[0]["text"] == "ok"


def test_ci_says_when_a_pull_request_changes_someone_elses_submission(script, tmp_path):
    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=repo, check=True,
                       capture_output=True)

    repo = tmp_path / "repo"
    (repo / "submissions").mkdir(parents=True)
    git("init", "-q", "-b", "main")
    write_template("theirs", repo / "submissions")
    git("add", ".")
    git("commit", "-q", "-m", "base")
    git("branch", "base")
    (repo / "submissions" / "theirs" / "README.md").write_text("sabotaged by another author\n")
    write_template("mine", repo / "submissions")
    git("add", ".")
    git("commit", "-q", "-m", "head")
    assert script.existing_submissions("base", repo) == {"theirs"}
    summary = tmp_path / "summary.md"
    script.main(["--repo", str(repo), "--base", "base", "--dataset", str(save_benchmark(make_tiny_benchmark(),
                 tmp_path / "b")), "--baseline", "length", "--baseline-results", str(tmp_path / "base-results"),
                 "--out", str(tmp_path / "ci"), "--summary", str(summary), "--bootstrap", "20", "--quiet"])
    report = summary.read_text()
    assert "changes submissions that already exist on the base branch: theirs." in report
    assert "| <code>mine</code> | tiny | ok |" in report
