"""Red-team attacks on the results seal and the leaderboard build (hostile contributor, careless user).

Each test is one attack that got through on main before this branch; it expects the secure behaviour.
Runs are real, sealed harness runs (see conftest); forgers use only what a contributor could do: copy,
move or rename sealed folders, edit files the seal does not cover, or hand a key holder files to merge
or resume.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import threading
from pathlib import Path

import pytest

from personalrewardbench.errors import MethodError
from personalrewardbench.evaluate import run_evaluation
from personalrewardbench.leaderboard.build import build_site
from personalrewardbench.leaderboard.verification import collect_runs, default_results_dirs
from personalrewardbench.methods import MethodEnv, MethodInfo, load_method
from personalrewardbench.results import ResultsError
from personalrewardbench.runs import merge_runs
from personalrewardbench.scoring import score
from personalrewardbench.seal import check_seal
from tests.leaderboard.conftest import MINI, PersonalLength, copy_tree, evaluate_into, mini_benchmark


def _toml(folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "submission.toml").write_text(f'[submission]\nname = "{name}"\n')


def _rows(runs, method: str) -> list:
    return [r for r in runs if r.method == method and r.dataset == MINI and r.full]


def _forge_all_correct(run: Path) -> None:
    """What a forger with the harness's code can do to an unsealed copy: every judgment right, every
    figure and hash recomputed so that `verify_run` alone passes."""
    data = json.loads((run / "results.json").read_text())
    preds = [json.loads(x) for x in (run / "predictions.jsonl").read_text().splitlines()]
    for r in preds:
        r["p"] = 1.0 if r["order"] == "chosen_first" else 0.0
    (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in preds))
    b = data["scores"]["bootstrap"]
    extra = {u: {f: row[f] for f in ("n_train", "n_val")} for u, row in data["per_user"].items()}
    data.update(score(preds, users=data["dataset"]["selected_users"], resamples=b["resamples"], seed=b["seed"],
                      user_extra=extra))
    data["degradation"]["judgments"].update(n_failed=0, n_ties=0, n_judgments=len(preds))
    data["files"]["predictions.jsonl"] = hashlib.sha256((run / "predictions.jsonl").read_bytes()).hexdigest()
    (run / "results.json").write_text(json.dumps(data))


def test_a_baseline_run_copied_into_a_submission_folder_is_not_shown_as_that_submission(
        standard_results: tuple[Path, Path], tmp_path: Path) -> None:
    """A contributor names their submission after a baseline and copies its sealed run into their folder:
    the run was made from baselines/length, not from submissions/length, so it is not 'submitted'."""
    sub = tmp_path / "submissions" / "length"
    _toml(sub, "length")
    shutil.copytree(standard_results[0] / MINI / "length" / "s0", sub / "results" / MINI / "length" / "s0")
    runs, skipped = collect_runs([sub / "results"])
    assert runs == []
    assert "not from submissions/length" in skipped[0].reason


def test_a_copy_under_a_misnamed_submission_does_not_displace_the_real_row(standard_results: tuple[Path, Path],
                                                                           tmp_path: Path) -> None:
    """submissions/aaa declares the name of submissions/personal-length and carries a copy of its sealed run:
    'aaa' sorts first, so the copy used to replace the real row (and its folder, on the page)."""
    real_sub, fake_sub = tmp_path / "submissions" / "personal-length", tmp_path / "submissions" / "aaa"
    _toml(real_sub, "personal-length")
    _toml(fake_sub, "personal-length")
    own = PersonalLength("personal-length", noise=0.2)
    own.method_info = MethodInfo(name="personal-length", source=str(real_sub), entry="adapter:PersonalLength",
                                 folder=real_sub)
    run = evaluate_into(real_sub / "results", own, mini_benchmark(), spec=str(standard_results[1]))
    shutil.copytree(run, fake_sub / "results" / MINI / "personal-length" / "s0")
    runs, skipped = collect_runs([fake_sub / "results", real_sub / "results"])
    (row,) = _rows(runs, "personal-length")
    assert (row.tier, row.origin, row.identical) == ("submitted", "submissions/personal-length", [])
    assert any("aaa" in s.path and "must equal the folder name" in s.reason for s in skipped)


def test_a_checkout_inside_a_folder_named_submissions_still_shows_its_runs(standard_results: tuple[Path, Path],
                                                                           tmp_path: Path, monkeypatch) -> None:
    """A careless user clones the repository into ~/submissions/prb: every run in results/ used to be read
    as a run of a submission called 'prb' and excluded."""
    repo = tmp_path / "submissions" / "prb"
    copy_tree(standard_results[0], repo / "results")
    monkeypatch.chdir(repo)
    runs, skipped = collect_runs(default_results_dirs(repo))
    assert skipped == []
    assert {r.tier for r in _rows(runs, "length")} == {"reproduced"}


def test_a_fifo_in_place_of_query_key_json_never_hangs_the_build(results_dir: Path) -> None:
    """query-key.json is not sealed; a FIFO there made the build wait forever on open()."""
    key = results_dir / MINI / "length" / "s0" / "query-key.json"
    key.unlink()
    os.mkfifo(key)
    out: list = []
    worker = threading.Thread(target=lambda: out.append(collect_runs([results_dir])), daemon=True)
    worker.start()
    worker.join(30)
    if worker.is_alive():  # unblock the reader so the test process can go on, then fail
        os.close(os.open(key, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(10)
        pytest.fail("the leaderboard build hangs on a FIFO named query-key.json")
    runs, skipped = out[0]
    reason = next(s.reason for s in skipped if f"{MINI}/length/s0/" in s.path)
    assert "query-key.json: not a regular file" in reason
    assert _rows(runs, "random")  # the others are still shown


def test_a_folder_name_that_is_not_utf8_does_not_crash_the_build(results_dir: Path, tmp_path: Path) -> None:
    """git stores file names as bytes: a results folder named b'bad\\xff' crashed the page writer."""
    bad = Path(os.fsdecode(bytes(results_dir / MINI) + b"/bad\xff\xfe"))
    shutil.copytree(results_dir / MINI / "length" / "s0", bad / "s0")
    (bad / "junk").mkdir()
    (bad / "junk" / "results.json").write_text("{}")
    report = build_site([results_dir], tmp_path / "site", include_reported=False, plots=False)
    page = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert "bad\\udcff\\udcfe/junk/results.json" in page
    assert any(s.path.endswith("junk/results.json") for s in report.skipped)


def test_deeply_nested_folders_do_not_crash_the_build_or_verify(results_dir: Path, tmp_path: Path, capsys) -> None:
    """1,100 nested folders (a PR can carry them) exhausted os.walk's recursion: a traceback for everyone."""
    from personalrewardbench.evaluate_commands import verify_folders

    fd = os.open(results_dir, os.O_RDONLY)
    for _ in range(1100):
        os.mkdir("d", dir_fd=fd)
        nxt = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nxt
    os.close(os.open("results.json", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    os.close(fd)
    try:
        report = build_site([results_dir], tmp_path / "site", include_reported=False, plots=False)
        assert any("nested more than" in s.reason for s in report.skipped)
        assert _rows(report.runs, "length")
        assert verify_folders([str(results_dir / MINI / "length")]) == 0
        with pytest.raises(MethodError, match="no results.json"):  # too deep to be read: a clear message
            verify_folders([str(results_dir / "d")])
        capsys.readouterr()
    finally:
        _remove_chain(results_dir / "d")  # shutil.rmtree (pytest's clean-up) recurses too


def _remove_chain(top: Path) -> None:
    """Delete a chain top/d/d/.../results.json without recursion: lift the chain one level at a time."""
    spare = top.with_name(top.name + ".next")
    while (top / "d").is_dir():
        os.rename(top / "d", spare)
        os.rmdir(top)
        os.rename(spare, top)
    (top / "results.json").unlink(missing_ok=True)
    os.rmdir(top)


def test_merge_does_not_seal_forged_shards(standard_results: tuple[Path, Path], tmp_path: Path) -> None:
    """Shards rewritten to 100% (figures and hashes recomputed, seal broken) handed to a key holder's
    `prb merge` came out sealed, and the merged 'length' row (100%) replaced the real one (50%)."""
    bench, spec = mini_benchmark(), str(standard_results[1])
    shards = [evaluate_into(tmp_path / "shards", load_method("length"), bench, spec=spec, shard=(i, 2))
              for i in range(2)]
    for d in shards:
        _forge_all_correct(d)
        assert check_seal(d).status == "bad"
    results = copy_tree(standard_results[0], tmp_path / "results")
    with pytest.raises(ResultsError, match="bad seal"):
        merge_runs(shards, results / MINI / "length" / "a-merged")
    runs, _ = collect_runs([results])
    assert [r.scores["accuracy"] for r in _rows(runs, "length")] == [0.5]


def test_resume_does_not_seal_predictions_edited_in_the_run_folder(standard_results: tuple[Path, Path],
                                                                   tmp_path: Path) -> None:
    """Edit a finished run's predictions (ids kept), drop results.json and seal.json, and let a key holder
    'resume' it: the harness computes figures from the edited lines and seals a 100% run.

    Fixed: progress.json carries a MAC, under the seal key, of checkpoints of the prediction log the harness
    wrote; resume keeps only the prefix that matches (here none) and predicts the rest again."""
    run = tmp_path / "run"
    common = {"show_progress": False, "dataset_spec": str(standard_results[1]), "resamples": 200}
    honest = run_evaluation(load_method("length"), mini_benchmark(), MethodEnv(seed=0), run, **common)
    assert honest["scores"]["accuracy"] == 0.5
    preds = [json.loads(x) for x in (run / "predictions.jsonl").read_text().splitlines()]
    for r in preds:
        r["p"] = 1.0 if r["order"] == "chosen_first" else 0.0
    (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in preds))
    for name in ("results.json", "seal.json"):
        (run / name).unlink()
    try:
        again = run_evaluation(load_method("length"), mini_benchmark(), MethodEnv(seed=0), run, **common)
    except Exception:  # noqa: BLE001 - refusing the edited folder is a secure outcome too
        return
    assert again["scores"]["accuracy"] == 0.5 or not check_seal(run).ok


def test_a_reported_row_with_zero_uncertainty_is_refused_not_shown_as_certain(tmp_path: Path) -> None:
    """ci95_or_se = 0 became the interval [acc, acc]: a published number shown as known exactly, and every tie
    mark against it decided by a point."""
    from personalrewardbench.leaderboard.reported import ReportedError, load_reported

    csv = tmp_path / "reported.csv"
    csv.write_text("source,dataset,base_model,method,accuracy,ci95_or_se,uncertainty_kind,note,citation_url\n"
                   '"Paper A",prism,m,memory,60.0,0,se,,\n')
    with pytest.raises(ReportedError, match="line 2: ci95_or_se is 0"):
        load_reported(csv)


def test_a_submission_cannot_take_a_baselines_name(tmp_path: Path, monkeypatch) -> None:
    """`submissions/length`, or `submissions/bt` with [variants.rm], validated fine; once merged, the registry
    let the later folder win, so `prb evaluate --method length` and CI's in-process baseline runs
    (`run_baselines`) imported the contributor's code unsandboxed, with $PRB_SEAL_KEY in its environment."""
    from personalrewardbench.cli import main
    from personalrewardbench.methods import resolve_method
    from personalrewardbench.submissions.spec import SubmissionError, validate_folder

    monkeypatch.chdir(tmp_path)
    assert main(["submission", "new", "scratch"]) == 0  # `new length` is refused now; copy a valid template
    marker = tmp_path / "imported"
    for name, variant in (("length", "strong"), ("bt", "rm")):
        folder = shutil.copytree(tmp_path / "submissions" / "scratch", tmp_path / "submissions" / name)
        toml = (folder / "submission.toml").read_text().replace('name = "scratch"', f'name = "{name}"')
        (folder / "submission.toml").write_text(toml.replace("[variants.strong]", f"[variants.{variant}]"))
        adapter = folder / "adapter.py"
        adapter.write_text(adapter.read_text() + f"\nopen({str(marker)!r}, 'w').write('in-process')\n")
    shutil.rmtree(tmp_path / "submissions" / "scratch")
    for name, taken in (("length", "baselines/length"), ("bt", "baselines/bt-rm")):
        with pytest.raises(SubmissionError, match=f"already taken by {taken}"):
            validate_folder(tmp_path / "submissions" / name)
    repo = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("PRB_METHOD_DIRS", os.pathsep.join([str(repo / "baselines"), str(tmp_path / "submissions")]))
    assert resolve_method("length").source == "baselines/length"
    assert resolve_method("bt-rm").source == "baselines/bt-rm"
    method = load_method("length")
    assert Path(sys.modules[type(method).__module__].__file__).parent == repo / "baselines" / "length"
    assert not marker.exists()
