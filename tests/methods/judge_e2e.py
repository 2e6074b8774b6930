"""Shared by the LLM-judge end-to-end tests: one real SmolLM2 per test session, and
"evaluate through the harness, then `prb verify` the results folder"."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path
from typing import Any

from personalrewardbench.data.schema import Benchmark
from personalrewardbench.methods import MethodEnv, load_method

_CACHE = Path(tempfile.mkdtemp(prefix="prb-judge-tests-"))
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)  # the converted model is ~0.5 GB


@functools.lru_cache(maxsize=4)
def smollm2(max_model_len: int | None = None) -> Any:
    """The embedded SmolLM2 (converted once into a per-session cache folder)."""
    from personalrewardbench.llm import make_llm

    opts = {"max_model_len": max_model_len} if max_model_len else {}
    return make_llm("transformers", cache_dir=str(_CACHE / "llm"), progress=False, **opts)


def evaluate_and_verify(method_name: str, bench: Benchmark, llm: Any, root: Path,
                        config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run ``method_name`` through the evaluator, then check `prb verify` accepts the run."""
    from personalrewardbench.cli import main
    from personalrewardbench.data import save_benchmark
    from personalrewardbench.evaluate import run_evaluation

    bench_dir = root / "bench"
    save_benchmark(bench, bench_dir)
    out = root / "run"
    res = run_evaluation(load_method(method_name, config), bench, MethodEnv(seed=0, llm=llm, show_progress=False),
                         out, resamples=200, show_progress=False)
    assert main(["verify", str(out), "--dataset", str(bench_dir)]) == 0
    return res
