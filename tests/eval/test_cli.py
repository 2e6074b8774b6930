"""`prb evaluate | verify | merge | compare` end to end on a built benchmark folder."""

from __future__ import annotations

import json

import pytest

from personalrewardbench.cli import main
from personalrewardbench.data import save_benchmark
from tests.eval.helpers import random_benchmark


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "tiny-built"
    save_benchmark(random_benchmark(n_users=6, n_test=3, seed=9, name="tiny-cli"), path)
    return path


def _evaluate(bench_dir, out, *extra):
    return main(["evaluate", "--method", "length", "--dataset", str(bench_dir), "--out", str(out), "--quiet", *extra])


def _run_dirs(out, method="length"):
    return sorted(p.parent for p in (out / "tiny-cli" / method).glob("*/results.json"))


def test_evaluate_verify_and_resume(bench_dir, tmp_path, capsys):
    out = tmp_path / "results"
    assert _evaluate(bench_dir, out) == 0
    text = capsys.readouterr().out
    assert "accuracy (pooled)" in text and "position consistency" in text
    (run,) = _run_dirs(out)
    res = json.loads((run / "results.json").read_text())
    assert res["provenance"]["command"].startswith("prb ") and res["status"] == "ok"
    before = (run / "predictions.jsonl").read_bytes()
    assert _evaluate(bench_dir, out) == 0  # same command: same folder, resumed, nothing redone
    assert _run_dirs(out) == [run] and (run / "predictions.jsonl").read_bytes() == before
    capsys.readouterr()
    assert main(["verify", str(out), "--dataset", str(bench_dir)]) == 0
    assert "1 of 1 results verified" in capsys.readouterr().out
    res["scores"]["user_mean_accuracy"] = 0.99
    (run / "results.json").write_text(json.dumps(res))
    assert main(["verify", str(run), "--dataset", str(bench_dir)]) == 1
    out_text = capsys.readouterr().out
    assert "FAIL" in out_text and "scores.user_mean_accuracy: recorded 0.99" in out_text


def test_shards_merge_and_compare(bench_dir, tmp_path, capsys):
    out = tmp_path / "results"
    for i in range(2):
        assert _evaluate(bench_dir, out, "--shard", f"{i}/2", "--seed", "3") == 0
    shards = _run_dirs(out)
    assert len(shards) == 2
    assert main(["merge", *map(str, shards), "--out", str(tmp_path / "merged")]) == 0
    assert main(["evaluate", "--method", "position", "--dataset", str(bench_dir), "--run-dir", str(tmp_path / "pos"),
                 "--seed", "3", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "merged"), str(tmp_path / "pos"), "--json"]) == 0
    cmp = json.loads(capsys.readouterr().out)
    assert (cmp["a"], cmp["b"], cmp["n_pairs"]) == ("length", "position", 18)
    assert main(["verify", str(tmp_path / "merged"), "--dataset", str(bench_dir)]) == 0


def test_user_errors_are_one_line(bench_dir, tmp_path, capsys):
    assert main(["evaluate", "--method", "lenght", "--dataset", str(bench_dir), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean: length" in err
    assert _evaluate(bench_dir, tmp_path, "--config", "{bad json") == 2
    assert "--config: not valid JSON" in capsys.readouterr().err
    assert _evaluate(bench_dir, tmp_path, "--shard", "2/2") == 2
    assert "0 <= i < n" in capsys.readouterr().err
    assert main(["verify", str(tmp_path / "nothing-here")]) == 2
    assert main(["evaluate", "--list-methods"]) == 0
    assert "random" in capsys.readouterr().out
