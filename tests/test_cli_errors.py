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
    ("data-build-bad-fractions", ["data", "build", "--source", "prism_raw", "--out", "{w}/x", "--split-fractions",
                                  "a,b"], "--split-fractions"),
    # prb evaluate
    ("evaluate-unknown-method", ["evaluate", "--method", "lenght", "--dataset", "{w}/built"], "length"),
    ("evaluate-bad-config-json", ["evaluate", "--method", "length", "--dataset", "{w}/built", "--config", "{x"],
     "--config"),
    ("evaluate-unknown-config-key", ["evaluate", "--method", "length", "--dataset", "{w}/built", "--config",
                                     '{"unti": "chars"}'], "valid keys: unit"),
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
    ("merge-not-shards", ["merge", "{w}/run-a", "{w}/run-a"], "not a shard"),
    ("merge-missing-folder", ["merge", "{w}/no-such-run"], "no-such-run"),
    ("compare-missing-folder", ["compare", "{w}/run-a", "{w}/no-such-run"], "no-such-run"),
    ("compare-different-benchmarks", ["compare", "{w}/run-a", "{w}/run-b"], "different benchmark versions"),
    # prb run
    ("run-unknown-method", ["run", "--methods", "lenght", "--out", "{w}/o/results"], "did you mean: length"),
    ("run-users-word", ["run", "--methods", "length", "--users", "several", "--out", "{w}/o/results"], "--users"),
    ("run-missing-dataset", ["run", "--dataset", "{w}/nowhere", "--out", "{w}/o/results"], "nowhere"),
    ("run-server-unreachable", ["run", "--dataset", "{w}/built", "--methods", "length,default-judge", "--backend",
                                "openai", "--base-url", "http://127.0.0.1:9/v1", "--out", "{w}/o/results"],
     "127.0.0.1:9"),
    # prb leaderboard build
    ("leaderboard-missing-results", ["leaderboard", "build", "--results", "{w}/nowhere", "--out", "{w}/site"],
     "nowhere"),
    ("leaderboard-out-is-a-file", ["leaderboard", "build", "--results", "{w}/run-a", "--out", "{w}/a-file"],
     "a-file"),
    # prb submission *
    ("submission-validate-syntax-error", ["submission", "validate", "{w}/subs/syntax-error"], "adapter.py, line"),
    ("submission-validate-bad-toml", ["submission", "validate", "{w}/subs/bad-toml"], "submission.toml"),
    ("submission-validate-missing", ["submission", "validate", "{w}/subs/nothing-here"], "nothing-here"),
    ("submission-new-bad-name", ["submission", "new", "My Method", "--dir", "{w}/subs"], "my-method"),
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
