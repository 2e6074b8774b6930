"""Results seals: made at the end of every run and merge, checked by `prb verify`, keyed outside results."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
from pathlib import Path

import pytest

from personalrewardbench.cli import main
from personalrewardbench.evaluate import run_evaluation
from personalrewardbench.methods import MethodEnv, load_method
from personalrewardbench.runs import merge_runs
from personalrewardbench.seal import SealError, check_seal, key_file_path, load_key, seal_run
from tests.eval.helpers import random_benchmark

BENCH = random_benchmark(n_users=6, n_test=4, seed=2)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.delenv("PRB_SEAL_KEY", raising=False)
    monkeypatch.setenv("PRB_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _run(out: Path, **kw) -> dict:
    return run_evaluation(load_method("length"), BENCH, MethodEnv(), out, show_progress=False, resamples=200, **kw)


def test_a_run_is_sealed_with_a_private_key_file(cache: Path, tmp_path: Path) -> None:
    _run(tmp_path / "run")
    key_file = cache / "seal.key"
    assert key_file_path() == key_file.absolute()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    seal = json.loads((tmp_path / "run" / "seal.json").read_text())
    assert seal["algorithm"] == "HMAC-SHA256" and set(seal["files"]) == {"results.json", "predictions.jsonl",
                                                                          "artifacts.json", "query-key.json"}
    for name, digest in seal["files"].items():
        assert digest == hashlib.sha256((tmp_path / "run" / name).read_bytes()).hexdigest()
    # the MAC is an HMAC-SHA256 of the canonical file table under the key in the key file
    message = json.dumps({"seal_version": 2, "files": dict(sorted(seal["files"].items()))}, sort_keys=True,
                         separators=(",", ":")).encode()
    want = hmac.new(key_file.read_text().strip().encode(), message, hashlib.sha256).hexdigest()
    assert seal["mac"] == want
    check = check_seal(tmp_path / "run")
    assert check.ok and check.status == "sealed"
    before = (tmp_path / "run" / "seal.json").read_bytes()
    seal_run(tmp_path / "run")
    assert (tmp_path / "run" / "seal.json").read_bytes() == before  # no timestamp: same files, same bytes


def test_check_names_what_is_wrong(cache: Path, tmp_path: Path, monkeypatch) -> None:
    run = tmp_path / "run"
    _run(run)
    art = run / "artifacts.json"
    original = art.read_bytes()
    art.write_text('{"u000": "edited"}')
    assert check_seal(run).status == "bad" and "changed after the run was sealed" in check_seal(run).detail
    art.write_bytes(original)
    assert check_seal(run).ok
    seal = json.loads((run / "seal.json").read_text())
    seal["mac"] = "0" * 64
    (run / "seal.json").write_text(json.dumps(seal))
    assert "MAC does not match" in check_seal(run).detail
    (run / "seal.json").unlink()
    assert check_seal(run).status == "unsealed"
    seal_run(run)
    monkeypatch.setenv("PRB_SEAL_KEY", "ci-secret-" + "s" * 40)
    assert "another key" in check_seal(run).detail


def test_prb_verify_reports_seal_status(cache: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "results" / "run"
    _run(run)
    spec = str(tmp_path / "bench")
    from personalrewardbench.data import save_benchmark

    save_benchmark(BENCH, spec)
    assert main(["verify", str(run), "--dataset", spec]) == 0
    assert "sealed with key id" in capsys.readouterr().out
    (run / "seal.json").unlink()
    assert main(["verify", str(run), "--dataset", spec]) == 1
    out = capsys.readouterr().out
    assert "unsealed" in out and "--ignore-seal" in out
    assert main(["verify", str(run), "--dataset", spec, "--ignore-seal"]) == 0


def test_merge_is_sealed(cache: Path, tmp_path: Path) -> None:
    for i in range(2):
        _run(tmp_path / f"s{i}", shard=(i, 2))
        assert check_seal(tmp_path / f"s{i}").ok
    merged = merge_runs([tmp_path / "s0", tmp_path / "s1"], tmp_path / "merged")
    assert check_seal(tmp_path / "merged").ok
    assert merged["degradation"]["judgments"]["n_judgments"] == merged["scores"]["n_judgments"] == 48


def test_key_is_refused_where_a_method_could_read_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("PRB_SEAL_KEY", raising=False)
    sub = tmp_path / "submissions" / "mine"
    sub.mkdir(parents=True)
    (sub / "submission.toml").write_text("[submission]\nname = 'mine'\n")
    monkeypatch.setenv("PRB_CACHE_DIR", str(sub / ".prb-cache"))
    with pytest.raises(SealError, match="inside .*submission.toml"):
        load_key()
    monkeypatch.setenv("PRB_CACHE_DIR", str(tmp_path / "cache"))
    key = load_key()
    os.chmod(tmp_path / "cache" / "seal.key", 0o644)
    with pytest.raises(SealError, match="chmod 600"):
        load_key()
    os.chmod(tmp_path / "cache" / "seal.key", 0o600)
    assert load_key().key_id == key.key_id
    monkeypatch.setenv("PRB_SEAL_KEY", "short")
    with pytest.raises(SealError, match="shorter than"):
        load_key()
