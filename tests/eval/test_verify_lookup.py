"""`prb verify RESULTS` finds the benchmark from the results alone: by name, by the recorded local path
(while its content hash still matches), or from the build cache by content hash; else a clear failure."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from personalrewardbench.cli import main
from personalrewardbench.data import save_benchmark
from personalrewardbench.data.cache import put
from personalrewardbench.evaluate import run_evaluation
from personalrewardbench.methods import MethodEnv, load_method
from tests.eval.helpers import random_benchmark


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.delenv("PRB_SEAL_KEY", raising=False)
    monkeypatch.setenv("PRB_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _run_dir(root: Path) -> Path:
    return next(root.rglob("results.json")).parent


def test_local_built_benchmark_is_found_then_fails_clearly_after_a_move(tmp_path: Path, capsys) -> None:
    built = save_benchmark(random_benchmark(n_users=5, n_test=3, name="my-local-bench"), tmp_path / "built")
    assert main(["evaluate", "--method", "length", "--dataset", str(built), "--out", str(tmp_path / "results"),
                 "--quiet", "--bootstrap", "200"]) == 0
    res = json.loads((_run_dir(tmp_path / "results") / "results.json").read_text())
    assert res["dataset"]["location"] == {"spec": str(built), "path": str(built.resolve())}
    capsys.readouterr()
    assert main(["verify", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    assert f"from the recorded path {built.resolve()}" in out and "1 of 1 results verified" in out
    shutil.move(built, tmp_path / "moved")
    assert main(["verify", str(tmp_path / "results")]) == 1
    out = capsys.readouterr().out
    assert "Traceback" not in out
    assert str(built.resolve()) in out and res["dataset"]["content_hash"] in out and "--dataset PATH" in out
    assert main(["verify", str(tmp_path / "results"), "--dataset", str(tmp_path / "moved")]) == 0


def test_a_changed_folder_at_the_recorded_path_is_not_used(tmp_path: Path, capsys) -> None:
    built = save_benchmark(random_benchmark(n_users=5, n_test=3, name="my-local-bench"), tmp_path / "built")
    assert main(["evaluate", "--method", "random", "--dataset", str(built), "--out", str(tmp_path / "results"),
                 "--quiet", "--bootstrap", "200"]) == 0
    shutil.rmtree(built)
    save_benchmark(random_benchmark(n_users=5, n_test=3, seed=9, name="my-local-bench"), built)  # new content
    capsys.readouterr()
    assert main(["verify", str(tmp_path / "results")]) == 1
    assert "a different content hash" in capsys.readouterr().out


def test_found_in_the_build_cache_by_content_hash(tmp_path: Path, _cache: Path, capsys) -> None:
    bench = random_benchmark(n_users=4, n_test=3, seed=4, name="cached-bench")
    put("some-build-key", bench, _cache / "data")
    run_evaluation(load_method("length"), bench, MethodEnv(), tmp_path / "results" / "run", show_progress=False,
                   resamples=200)  # no --dataset recorded
    assert main(["verify", str(tmp_path / "results")]) == 0
    assert "from the build cache" in capsys.readouterr().out


def test_found_by_name(tmp_path: Path, capsys) -> None:
    assert main(["evaluate", "--method", "length", "--dataset", "synthetic", "--out", str(tmp_path / "results"),
                 "--quiet", "--bootstrap", "200"]) == 0
    capsys.readouterr()
    assert main(["verify", str(tmp_path / "results")]) == 0
    assert "by name (synthetic-sample)" in capsys.readouterr().out


class _Planted:
    """A pickle that would run code when loaded by a plain unpickler."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_build_cache_entries_are_checked_not_trusted(tmp_path: Path, _cache: Path) -> None:
    """An entry whose pairs were edited (manifest and its content hash kept), or one that names code to run, is a
    cache miss: the benchmark a run is verified against always has the content hash it claims."""
    import pickle

    from personalrewardbench.data.cache import get

    bench = random_benchmark(n_users=4, n_test=3, seed=4, name="cached-bench")
    put("honest", bench, _cache / "data")
    got = get("honest", _cache / "data")
    assert got is not None and got.pairs == bench.pairs and got.content_hash == bench.content_hash
    entry = _cache / "data" / "honest.pkl"
    payload = pickle.loads(entry.read_bytes())
    texts = list(payload["texts"])
    texts[0] += " (edited)"
    payload["texts"] = texts
    (_cache / "data" / "edited.pkl").write_bytes(pickle.dumps(payload))
    assert get("edited", _cache / "data") is None
    marker = tmp_path / "code-ran"
    payload["manifest"] = _Planted(marker)
    (_cache / "data" / "planted.pkl").write_bytes(pickle.dumps(payload))
    assert get("planted", _cache / "data") is None and not marker.exists()
