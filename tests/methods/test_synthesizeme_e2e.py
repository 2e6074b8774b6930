"""SynthesizeMe end to end with the real embedded SmolLM2 (8k context, CPU) through the evaluator.

Small settings keep it short: 2 users, 2 train / 1 val / 1 test pairs each, no
shuffled candidates, one labeled demo, short reply caps, the built-in persona writer (the
reference's Theta program is checked against the real package and, call for call, by
scripts/bench/protocol_vs_reference.py). It still runs every phase. The results must pass `prb verify`'s checks, and failed judgments must be
counted, not hidden. Marked slow: loading the model and ~40 CPU generations
take over a minute on 2 cores.
"""

from __future__ import annotations

import json

import pytest

from personalrewardbench.evaluate import run_evaluation
from personalrewardbench.methods import MethodEnv, load_method
from personalrewardbench.runs import verify_run
from tests.conftest import make_tiny_benchmark

SMALL = {"num_candidates": 0, "max_labeled_demos": 1, "max_judge_tokens": 32, "max_persona_tokens": 48,
         "max_tries": 2, "persona_program": "builtin"}


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    from personalrewardbench.llm import make_llm

    llm = make_llm("transformers", cache_dir=str(tmp_path_factory.mktemp("sme-llm-cache")))
    yield llm
    llm.close()


@pytest.mark.slow
def test_synthesizeme_runs_end_to_end_with_smollm2_and_verifies(smollm2, tmp_path):
    bench = make_tiny_benchmark(n_users=2, n_train=2, n_val=1, n_test=1)
    method = load_method("synthesizeme", SMALL)
    env = MethodEnv(seed=0, llm=smollm2, cache_dir=tmp_path / "cache", show_progress=False)
    out = tmp_path / "run"
    results = run_evaluation(method, bench, env, out, resamples=200, show_progress=False)

    assert results["status"] == "ok"
    assert verify_run(out, bench) == []
    assert smollm2.context_length == 8192 and smollm2.usage.truncated_prompts == 0

    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 4 and all(p["p"] in (0.0, 1.0, None) for p in preds)
    usage = results["method_usage"]
    # failed judgments are counted, and the count matches the null predictions
    assert usage["failed_judgments"] == sum(p["p"] is None for p in preds) == results["scores"]["n_failed"]
    # every phase ran, each as one batch (plus retry batches) for both users together
    assert {"bootstrap", "search1", "persona", "bootstrap2", "search2", "predict"} <= set(usage["llm_batches"])
    artifacts = json.loads((out / "artifacts.json").read_text())
    assert set(artifacts) == {"user0", "user1"}
    assert all(a.startswith("Persona:") and "Chosen candidate:" in a for a in artifacts.values())
    assert results["provenance"]["prompt_template_hashes"]
