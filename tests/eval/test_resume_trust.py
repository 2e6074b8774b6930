"""A resumed run seals only what the harness itself wrote (progress.json's MAC under the seal key), and still
resumes after a crash or Ctrl-C. Each test edits a run folder the way a forger or a crash would, with real runs."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from personalrewardbench import run_progress
from personalrewardbench.evaluate import run_evaluation
from personalrewardbench.methods import MethodEnv, load_method
from personalrewardbench.query_keys import QUERY_KEY_FILE, read_key_file
from personalrewardbench.results import PredictionLog, read_predictions
from personalrewardbench.runs import verify_run
from personalrewardbench.seal import check_seal
from tests.eval.helpers import CrashAfter, random_benchmark

BENCH = random_benchmark(n_users=6, n_test=6, seed=3)  # 36 pairs, 72 queries
N_QUERIES = 72


@pytest.fixture(autouse=True)
def keyed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("PRB_SEAL_KEY", raising=False)
    monkeypatch.delenv("PRB_REQUIRE_SEAL_KEY", raising=False)
    monkeypatch.setenv("PRB_CACHE_DIR", str(tmp_path / "cache"))


def _run(method, run: Path, **kw) -> dict:
    return run_evaluation(method, BENCH, MethodEnv(seed=0), run, show_progress=False, resamples=100, **kw)


def _crashed_run(run: Path, ok_calls: int) -> None:
    crashy = CrashAfter()
    crashy.ok_calls = ok_calls
    with pytest.raises(KeyboardInterrupt):
        _run(crashy, run, chunk_size=10)
    assert len(PredictionLog(run / "predictions.jsonl").read()) == 10 * ok_calls


def _rewrite(path: Path, edit) -> None:  # noqa: ANN001 - a function of the parsed lines
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(r) + "\n" for r in edit(lines)))


def _all_right(lines: list[dict]) -> list[dict]:
    return [{**r, "p": 1.0 if r["order"] == "chosen_first" else 0.0} for r in lines]


def test_predictions_edited_in_a_finished_run_are_discarded_and_predicted_again(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    honest = _run(load_method("length"), run)
    _rewrite(run / "predictions.jsonl", _all_right)
    (run / "results.json").unlink()
    (run / "seal.json").unlink()
    again = _run(load_method("length"), run)
    assert again["scores"]["accuracy"] == honest["scores"]["accuracy"] < 1.0
    assert again["cost"]["discarded_on_resume"] == N_QUERIES
    assert "not lines this harness wrote" in capsys.readouterr().err
    assert check_seal(run).ok and verify_run(run, BENCH) == []


def test_an_edit_in_the_middle_of_an_interrupted_run_keeps_only_the_chunks_before_it(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _crashed_run(run, ok_calls=3)  # 3 chunks of 10 checkpointed
    _rewrite(run / "predictions.jsonl", lambda ls: [*ls[:15], {**ls[15], "p": 1 - ls[15]["p"]}, *ls[16:]])
    again = CrashAfter()
    res = _run(again, run, chunk_size=10)
    assert res["cost"]["discarded_on_resume"] == 20  # chunk 2 (edited) and chunk 3 (after it)
    assert again.predicted == N_QUERIES - 10
    fresh = _run(CrashAfter(), tmp_path / "fresh")
    assert res["scores"] == fresh["scores"] and check_seal(run).ok and verify_run(run, BENCH) == []


def test_a_crash_between_writing_a_chunk_and_checkpointing_it_redoes_that_chunk(tmp_path: Path,
                                                                               monkeypatch) -> None:
    """The chunk reached predictions.jsonl but progress.json was not rewritten (power cut): it is not vouched for."""
    run = tmp_path / "run"
    saves = {"n": 0}
    real_save = run_progress.ProgressBook.save

    def dying_save(self, totals):  # noqa: ANN001
        saves["n"] += 1
        if saves["n"] == 5:  # key, fit, chunk 1, chunk 2 saved; dies before chunk 3's checkpoint
            raise KeyboardInterrupt
        real_save(self, totals)

    monkeypatch.setattr(run_progress.ProgressBook, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        _run(CrashAfter(), run, chunk_size=10)
    monkeypatch.setattr(run_progress.ProgressBook, "save", real_save)
    assert len(PredictionLog(run / "predictions.jsonl").read()) == 30
    again = CrashAfter()
    res = _run(again, run, chunk_size=10)
    assert again.predicted == N_QUERIES - 20 and res["cost"]["discarded_on_resume"] == 10
    assert res["cost"]["resumed"] and check_seal(run).ok and verify_run(run, BENCH) == []


def test_a_crash_while_the_finished_log_is_sorted_loses_nothing(tmp_path: Path, monkeypatch) -> None:
    """The sorted log's checkpoint is saved before the file is replaced: dying at either moment resumes cleanly."""
    real_replace = os.replace
    for die_before_replace in (True, False):
        run = tmp_path / f"run-{die_before_replace}"

        def dying_replace(src, dst, *a, _before=die_before_replace, **kw):  # noqa: ANN001
            if Path(dst).name == "predictions.jsonl":
                if not _before:
                    real_replace(src, dst, *a, **kw)
                raise KeyboardInterrupt
            return real_replace(src, dst, *a, **kw)

        monkeypatch.setattr(run_progress.os, "replace", dying_replace)
        with pytest.raises(KeyboardInterrupt):
            _run(CrashAfter(), run, chunk_size=10)
        monkeypatch.setattr(run_progress.os, "replace", real_replace)
        done = CrashAfter()
        done.ok_calls = 0  # nothing may be predicted again
        res = _run(done, run, chunk_size=10)
        assert res["cost"]["discarded_on_resume"] == 0 and done.calls == 0
        assert check_seal(run).ok and verify_run(run, BENCH) == []


def test_edited_artifacts_are_refitted_not_sealed(tmp_path: Path) -> None:
    from tests.leaderboard.conftest import PersonalLength

    run = tmp_path / "run"
    _run(PersonalLength(persona="Likes {}."), run)
    honest = (run / "artifacts.json").read_text()
    (run / "artifacts.json").write_text(json.dumps({"u000": "<script>forged persona</script>"}))
    (run / "results.json").unlink()
    _run(PersonalLength(persona="Likes {}."), run)
    assert (run / "artifacts.json").read_text() == honest and check_seal(run).ok


@pytest.mark.parametrize("tamper", ["progress-totals", "progress-other-key", "query-key", "no-progress"])
def test_a_folder_nothing_vouches_for_starts_afresh(tmp_path: Path, monkeypatch, capsys, tamper: str) -> None:
    """Edited cost totals, progress written under another key, a planted query secret, or no progress at all:
    nothing of the folder is kept (a planted secret is never used), and the run is complete and sealed."""
    run = tmp_path / "run"
    _crashed_run(run, ok_calls=2)
    planted = None
    progress = run / "progress.json"
    if tamper == "progress-totals":
        data = json.loads(progress.read_text())
        data["totals"]["prompt_tokens"] = 1.0
        progress.write_text(json.dumps(data))
    elif tamper == "progress-other-key":
        monkeypatch.setenv("PRB_SEAL_KEY", "another-machine-" + "q" * 32)
    elif tamper == "query-key":
        from personalrewardbench.query_keys import KeyEntry, write_key_file

        planted = b"p" * 32
        write_key_file(run, [KeyEntry(planted)])
    else:
        progress.unlink()
    again = CrashAfter()
    res = _run(again, run, chunk_size=10)
    assert again.predicted == N_QUERIES and res["cost"]["discarded_on_resume"] == 20
    assert not res["cost"]["resumed"] and res["cost"]["prompt_tokens"] == 0
    assert "nothing in the folder is vouched for" in capsys.readouterr().err
    assert read_key_file(run)[0].secret != planted
    assert check_seal(run).ok and verify_run(run, BENCH) == []


def test_progress_never_holds_the_query_secret(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _run(load_method("length"), run)
    secret = read_key_file(run)[0].secret
    text = (run / "progress.json").read_text()
    assert secret.hex() not in text
    record = json.loads(text)
    assert record["query_key_sha256"] == hashlib.sha256((run / QUERY_KEY_FILE).read_bytes()).hexdigest()
    body = (run / "predictions.jsonl").read_bytes()
    assert record["log"]["sorted"] == [len(body), hashlib.sha256(body).hexdigest()]
    assert len(read_predictions(run)) == N_QUERIES


def test_a_linked_prediction_log_is_never_read_or_written_through(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _crashed_run(run, ok_calls=2)
    outside = tmp_path / "outside.jsonl"
    outside.write_bytes((run / "predictions.jsonl").read_bytes())
    (run / "predictions.jsonl").unlink()
    (run / "predictions.jsonl").symlink_to(outside)
    before = outside.read_bytes()
    again = CrashAfter()
    _run(again, run, chunk_size=10)
    assert again.predicted == N_QUERIES and outside.read_bytes() == before
    assert not (run / "predictions.jsonl").is_symlink() and check_seal(run).ok
