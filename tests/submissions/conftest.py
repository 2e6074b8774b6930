"""Fixtures for the submission/sandbox tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from personalrewardbench.data.schema import Benchmark, content_hash
from personalrewardbench.evaluate import make_queries
from personalrewardbench.methods import MethodEnv
from tests.conftest import make_tiny_benchmark

FIXTURES = Path(__file__).resolve().parent / "fixtures"
MISBEHAVING = FIXTURES / "misbehaving"
SNOOP = FIXTURES / "snoop"


def canary_benchmark(canary: str) -> Benchmark:
    """The tiny benchmark with ``canary`` in every test pair's id and label metadata (and nowhere else)."""
    bench = make_tiny_benchmark()
    pairs = tuple(dataclasses.replace(p, pair_id=f"{p.pair_id}-{canary}", meta={"label": f"chosen-{canary}"})
                  if p.split == "test" else p for p in bench.pairs)
    manifest = dataclasses.replace(bench.manifest, content_hash=content_hash(pairs, bench.profiles))
    return Benchmark(pairs=pairs, profiles=bench.profiles, manifest=manifest)


@pytest.fixture
def tiny():
    return make_tiny_benchmark()


def run_method(method, bench: Benchmark) -> list:
    """setup, fit on all histories, predict every test query; the predictions."""
    method.setup(MethodEnv(seed=0, show_progress=False))
    method.fit(bench.histories())
    queries, _ = make_queries(bench.pairs_of("test"), 0)
    return method.predict(queries)
