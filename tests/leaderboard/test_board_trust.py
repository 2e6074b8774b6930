"""The board shows only numbers the harness computed and verified: forged, rewritten, unsealed, linked and
malformed results folders are excluded and named (build output and page), and the build always goes on."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from personalrewardbench.cli import main
from personalrewardbench.methods import MethodInfo, load_method
from personalrewardbench.runs import verify_run
from personalrewardbench.scoring import score
from tests.leaderboard.conftest import MINI, PersonalLength, evaluate_into, mini_benchmark


def _rows(site: Path) -> list[dict]:
    return json.loads((site / "leaderboard.json").read_text())["rows"]


def _excluded(site: Path) -> dict[str, str]:
    return {s["path"]: s["reason"] for s in json.loads((site / "leaderboard.json").read_text())["skipped_results"]}


def _build(results: Path | list[Path], out: Path, capsys) -> tuple[str, str]:
    dirs = results if isinstance(results, list) else [results]
    argv = ["leaderboard", "build", "--out", str(out), "--no-reported", "--no-plots"]
    for d in dirs:
        argv += ["--results", str(d)]
    assert main(argv) == 0
    out_err = capsys.readouterr()
    assert "Traceback" not in out_err.out + out_err.err
    return out_err.out, out_err.err


def _length_row(site: Path) -> dict:
    return next(r for r in _rows(site) if r["method"] == "length" and r["dataset"] == MINI and r["section"] == "ranked")


def _rehash(folder: Path, data: dict) -> None:
    """Recompute files hashes and write results.json, as a forger with the harness's code would."""
    for name in ("predictions.jsonl", "artifacts.json"):
        if (folder / name).exists():
            data["files"][name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    (folder / "results.json").write_text(json.dumps(data, indent=2))


def test_forged_future_dated_folder_does_not_replace_the_real_row(results_dir: Path, tmp_path: Path, capsys) -> None:
    real = json.loads((results_dir / MINI / "length" / "s0" / "results.json").read_text())
    forged = results_dir / MINI / "length" / "zzzz-forged"
    forged.mkdir()
    preds = [json.loads(x) for x in (results_dir / MINI / "length" / "s0" / "predictions.jsonl").read_text().splitlines()]
    for r in preds:  # every judgment right
        r["p"] = 1.0 if r["order"] == "chosen_first" else 0.0
    (forged / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in preds))
    (forged / "artifacts.json").write_text("{}")
    data = json.loads(json.dumps(real))
    data.update(score(preds, users=data["dataset"]["selected_users"], resamples=500, seed=0))
    data["method"]["tier"] = "reproduced"
    data["provenance"]["finished_at"] = "2999-12-31T00:00:00Z"
    data["run_id"] = "zzzz-forged"
    _rehash(forged, data)
    assert verify_run(forged) == []  # figures and hashes are consistent: only the seal can tell
    _, err = _build(results_dir, tmp_path / "site", capsys)
    assert _length_row(tmp_path / "site")["accuracy"] == real["scores"]["accuracy"] < 1.0
    excluded = _excluded(tmp_path / "site")
    key = next(k for k in excluded if "zzzz-forged" in k)
    assert excluded[key].startswith("unsealed")
    assert "zzzz-forged" in err and "zzzz-forged" in (tmp_path / "site" / "index.html").read_text()


def test_rewritten_predictions_with_recomputed_figures_break_the_seal(results_dir: Path, tmp_path: Path,
                                                                      capsys) -> None:
    run = results_dir / MINI / "length" / "s0"
    preds = [json.loads(x) for x in (run / "predictions.jsonl").read_text().splitlines()]
    for r in preds:
        r["p"] = 1.0 if r["order"] == "chosen_first" else 0.0
    (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in preds))
    data = json.loads((run / "results.json").read_text())
    data.update(score(preds, users=data["dataset"]["selected_users"], resamples=500, seed=0))
    _rehash(run, data)
    assert verify_run(run) == []
    _build(results_dir, tmp_path / "site", capsys)
    assert not [r for r in _rows(tmp_path / "site") if r["method"] == "length" and r["section"] == "ranked"
                and r["dataset"] == MINI]
    reason = next(v for k, v in _excluded(tmp_path / "site").items() if f"{MINI}/length/s0/" in k)
    assert reason.startswith("bad seal") and "changed after the run was sealed" in reason


def test_a_run_sealed_with_another_key_is_excluded(results_dir: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("PRB_SEAL_KEY", "some-other-machine-" + "z" * 32)
    evaluate_into(results_dir, load_method("length"), mini_benchmark(),
                  spec=json.loads((results_dir / MINI / "random" / "s0" / "results.json").read_text())
                  ["dataset"]["location"]["path"], seed=7)
    monkeypatch.setenv("PRB_SEAL_KEY", "leaderboard-tests-" + "k" * 32)
    _build(results_dir, tmp_path / "site", capsys)
    reason = next(v for k, v in _excluded(tmp_path / "site").items() if f"{MINI}/length/s7/" in k)
    assert "another key" in reason


def test_symlinks_are_never_followed(results_dir: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("PRB_TEST_MARKER", "environ-leak-9f8e7d")
    run = results_dir / MINI / "random" / "s0"
    (run / "artifacts.json").unlink()
    os.symlink("/proc/self/environ", run / "artifacts.json")
    outside = tmp_path / "elsewhere"
    shutil.copytree(results_dir / MINI / "position", outside)
    os.symlink(outside, results_dir / MINI / "linked-method")
    _, err = _build(results_dir, tmp_path / "site", capsys)
    excluded = _excluded(tmp_path / "site")
    assert "symbolic link" in next(v for k, v in excluded.items() if f"{MINI}/random/s0" in k)
    assert "symbolic link" in next(v for k, v in excluded.items() if k.endswith("linked-method"))
    for p in (tmp_path / "site").rglob("*"):
        if p.is_file():
            assert b"environ-leak-9f8e7d" not in p.read_bytes(), p
    assert "linked-method" in err
    assert _length_row(tmp_path / "site")["status"] == "ok"  # the others are still shown


@pytest.mark.parametrize("name, content", [
    ("deep", "[" * 100_000 + "]" * 100_000),
    ("huge-int", None),
    ("outside-own-ci", None),
    ("wrong-types", None),
    ("not-json", "{not json"),
])
def test_one_bad_file_is_skipped_by_name_and_the_build_goes_on(results_dir: Path, tmp_path: Path, capsys,
                                                              name: str, content: str | None) -> None:
    bad = results_dir / MINI / "random" / "s0"
    data = json.loads((bad / "results.json").read_text())
    if name == "huge-int":
        content = json.dumps(data).replace(f'"accuracy": {data["scores"]["accuracy"]}', '"accuracy": ' + "9" * 400, 1)
    elif name == "outside-own-ci":
        data["scores"]["accuracy"] = 0.99
        content = json.dumps(data)
    elif name == "wrong-types":
        data["scores"] = ["not", "a", "table"]
        data["per_user"] = "nobody"
        content = json.dumps(data)
    (bad / "results.json").write_text(content)
    _, err = _build(results_dir, tmp_path / "site", capsys)
    excluded = _excluded(tmp_path / "site")
    assert any(f"{MINI}/random/s0/results.json" in k for k in excluded), excluded
    assert f"{MINI}/random/s0" in err
    assert _length_row(tmp_path / "site")["status"] == "ok"
    assert "random" not in {r["method"] for r in _rows(tmp_path / "site") if r["dataset"] == MINI}


def test_tiers_come_from_where_a_run_sits(standard_results: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    bench, spec = mini_benchmark(), str(standard_results[1])
    sub = tmp_path / "submissions" / "my-method"
    sub.mkdir(parents=True)
    (sub / "submission.toml").write_text('[submission]\nname = "my-method"\n[variants.wide]\nconfig = {}\n')
    for name, noise in (("my-method", 0.2), ("my-method-wide", 0.3)):  # runs of the submission's own code
        own = PersonalLength(name, noise=noise)
        own.method_info = MethodInfo(name=name, source=str(sub), entry="adapter:PersonalLength", folder=sub)
        evaluate_into(sub / "results", own, bench, spec=spec)
    evaluate_into(sub / "results", load_method("length"), bench, spec=spec, seed=3)  # not this submission's
    other = tmp_path / "submissions" / "linked"
    other.mkdir()
    os.symlink(sub / "results", other / "results")
    results = tmp_path / "results"
    evaluate_into(results, load_method("random"), bench, spec=spec)
    evaluate_into(results, PersonalLength("author-own"), bench, spec=spec)
    data = json.loads(next(results.rglob("author-own/*/results.json")).read_text())
    assert "tier" not in data["method"]  # the harness cannot know where the run will sit: it claims no tier
    # a run written by an older harness, which put a tier claim in the file (sealed with it): still verifies,
    # and the board ignores the claim
    evaluate_into(results, PersonalLength("author-old"), bench, spec=spec)
    old = next(results.rglob("author-old/*/results.json")).parent
    data = json.loads((old / "results.json").read_text())
    data["method"]["tier"] = "submitted"
    (old / "results.json").write_text(json.dumps(data, indent=2))
    from personalrewardbench.seal import check_seal, seal_run

    seal_run(old)
    assert check_seal(old).ok and verify_run(old) == []
    _build([results, sub / "results", other / "results"], tmp_path / "site", capsys)
    tiers = {r["method"]: r["tier"] for r in _rows(tmp_path / "site")}
    assert tiers == {"my-method": "submitted", "my-method-wide": "submitted", "random": "reproduced",
                     "author-own": "local", "author-old": "local"}
    excluded = _excluded(tmp_path / "site")
    assert "not one of that submission's methods" in next(v for k, v in excluded.items() if "length/s3" in k)
    assert "symbolic link" in next(v for k, v in excluded.items() if "linked" in k)
