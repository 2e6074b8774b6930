"""Checks on everything a sandboxed adapter sends back (it is untrusted: each value is validated
before the harness uses it, and nothing it sends lands in a field the harness owns)."""

from __future__ import annotations

import json
import math
import signal
from collections.abc import Mapping, Sequence
from typing import Any

from personalrewardbench.data.schema import Query
from personalrewardbench.errors import MethodError

SIGNAL_HINTS = {
    signal.SIGKILL: "killed (SIGKILL): usually the memory limit or the system's OOM killer",
    signal.SIGSEGV: "segmentation fault: often a native library failing to allocate under the memory limit",
    signal.SIGXCPU: "CPU-time limit exceeded (RLIMIT_CPU)",
    signal.SIGXFSZ: "file-size limit exceeded: the adapter wrote a too-large file or log",
    signal.SIGABRT: "aborted: often a native library failing to allocate under the memory limit",
}

MAX_CONFIG_BYTES = 64 * 1024
MAX_USAGE_BYTES = 256 * 1024
MAX_CAPABILITIES = 32


class SandboxError(MethodError):
    """The sandboxed adapter failed; ``kind`` is crash|crash-exception|timeout|memory|processes|
    bad-output|protocol|isolation|internal."""

    def __init__(self, message: str, kind: str = "crash") -> None:
        super().__init__(message)
        self.kind = kind


def _describe(v: Any) -> str:
    if isinstance(v, str):
        return f"{v} (not finite)" if v in ("nan", "inf", "-inf") else f"a str {v[:20]!r}"
    if isinstance(v, dict) and isinstance(v.get("type"), str):
        return f"a {v['type'][:40]}"
    return f"a {type(v).__name__}"


def check_predictions(values: Any, queries: Sequence[Query], who: str) -> list[float | None]:
    """The worker's answer to ``predict`` as a list of floats/None, or SandboxError naming each problem."""
    n = len(queries)
    if not isinstance(values, list):
        raise SandboxError(f"{who}: predict returned a {type(values).__name__}, not a list; return one value per "
                           "query, in the order given", "bad-output")
    if len(values) != n:
        raise SandboxError(f"{who}: predict returned {len(values)} values for {n} queries; return exactly one value "
                           "per query, in the order given (None for a failed judgment)", "bad-output")
    out: list[float | None] = []
    problems: list[str] = []
    for q, v in zip(queries, values, strict=True):
        if v is None:
            out.append(None)
            continue
        if isinstance(v, bool) or not isinstance(v, int | float):
            problems.append(f"query {q.query_id}: {_describe(v)}")
            out.append(None)
            continue
        f = float(v)  # ints are bounded by the protocol (at most 40 digits), so this cannot overflow
        if not math.isfinite(f) or not 0.0 <= f <= 1.0:
            problems.append(f"query {q.query_id}: {f!r} is outside [0, 1]" if math.isfinite(f)
                            else f"query {q.query_id}: {f!r} (not finite)")
        out.append(f)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise SandboxError(f"{who}: predict returned {len(problems)} invalid value(s): {shown}. Return P(first "
                           "preferred) as a float in [0, 1], 0.5 for a tie, or None for a failed judgment",
                           "bad-output")
    return out


def check_artifacts(arts: Any, who: str) -> dict[str, str]:
    if not isinstance(arts, dict) or not all(isinstance(v, str) for v in arts.values()):
        bad = type(arts).__name__ if not isinstance(arts, dict) else next(
            (_describe(v) for v in arts.values() if not isinstance(v, str)), "?")
        raise SandboxError(f"{who}: artifacts() must return a mapping of user_id to text (got {bad})", "bad-output")
    return dict(arts)


def _json_size(obj: Any) -> int:
    """Length of ``obj`` as strict JSON; ValueError for NaN/inf (results.json must stay valid JSON)."""
    return len(json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False))


def check_hello(hello: Any, who: str, known_capabilities: Mapping[str, str]) -> tuple[frozenset[str], dict[str, Any]]:
    """(capabilities, the adapter's reported config) from its start-up message, or SandboxError."""
    if not isinstance(hello, dict):
        raise SandboxError(f"{who}: malformed start-up message (a {type(hello).__name__}, not an object)", "protocol")
    caps = hello.get("capabilities")
    if not isinstance(caps, list) or len(caps) > MAX_CAPABILITIES or not all(isinstance(c, str) for c in caps):
        raise SandboxError(f"{who}: malformed start-up message (capabilities must be a list of names)", "protocol")
    unknown = sorted(set(caps) - set(known_capabilities))
    if unknown:
        raise SandboxError(f"{who}: unknown capabilities {', '.join(repr(c[:40]) for c in unknown[:5])}; declare only "
                           f"{', '.join(sorted(known_capabilities))}", "bad-output")
    config = hello.get("config")
    try:
        too_big = not isinstance(config, dict) or _json_size(config) > MAX_CONFIG_BYTES
    except ValueError:
        too_big = True
    if too_big:
        raise SandboxError(f"{who}: get_config() must return a mapping of finite JSON values, at most "
                           f"{MAX_CONFIG_BYTES} bytes",
                           "bad-output")
    return frozenset(caps), config


def check_usage(own: Any) -> tuple[dict[str, Any] | None, str | None]:
    """(the adapter's own counters, None) when they are a small JSON object; else (None, why ignored)."""
    if own is None or own == {}:
        return None, None
    if not isinstance(own, dict):
        return None, f"usage() returned a {type(own).__name__}, not a mapping; ignored"
    try:
        size = _json_size(own)
    except ValueError:
        return None, "usage() returned non-finite numbers (NaN or infinity); ignored"
    if size > MAX_USAGE_BYTES:
        return None, f"usage() returned more than {MAX_USAGE_BYTES} bytes of JSON; ignored"
    return own, None
