"""The harness answering a sandboxed adapter's LLM requests (``count_tokens``, ``generate``,
``choice_logprobs``) with its own LLM, inside the run's wall-clock limit.

The time the harness spends serving counts against the adapter's limit, and one request
(however many prompts) never runs far past it, in two layers:

- the whole request runs inside :func:`personalrewardbench.llm.base.deadline_scope`: the
  backends stop at the deadline themselves (the transformers engine before every forward
  pass, i.e. within one decoding step; the OpenAI-compatible backend caps each HTTP
  request's timeout at the time left; every backend before each of its batches);
- the prompts are run in slices sized from the measured seconds per prompt (kept per kind
  of request in ``pace``, across requests): a slice is planned to take at most half the
  time left, up to ``slice_size`` prompts (a first request probes with :data:`PROBE`). A
  backend that cannot stop inside a batch (vLLM's offline engine) thus overshoots by about
  one prompt's time, not one batch's.

Arguments come from the adapter and are checked here (types, known function names, at most
:data:`MAX_CHOICES` short answers per ``choice_logprobs`` request).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, fields
from typing import Any

from personalrewardbench.llm.base import deadline_scope
from personalrewardbench.submissions.protocol import chat_from_list

MAX_CHOICES = 64  # answers scored in one choice_logprobs request ("A"/"B", a 1-10 scale, a few labels)
MAX_CHOICE_CHARS = 200
MAX_STOP = 16  # stop strings per generate request
PROBE = 4  # prompts in the first slice of a kind of request whose pace is not known yet
SHARE = 0.5  # a slice is planned to take at most this share of the time left


def _params(p: Any) -> Any:
    from personalrewardbench.llm.base import GenerationParams

    if p is None:
        return None
    if not isinstance(p, dict):
        raise ValueError("params must be an object of GenerationParams fields")
    known = {f.name for f in fields(GenerationParams)}
    unknown = sorted(set(p) - known)
    if unknown:
        raise ValueError(f"unknown generation parameters {unknown[:5]}")
    stop = p.get("stop") or ()
    if not isinstance(stop, list | tuple) or not all(isinstance(s, str) for s in stop):
        raise ValueError("params.stop must be a list of strings")
    if len(stop) > MAX_STOP or any(len(s) > MAX_CHOICE_CHARS for s in stop):  # checked at every generated token
        raise ValueError(f"params.stop: at most {MAX_STOP} strings of at most {MAX_CHOICE_CHARS} characters")
    num = (int, float)
    checks = {"max_tokens": (int, 1, 1 << 20), "temperature": (num, 0.0, 100.0), "top_p": (num, 0.0, 1.0),
              "seed": (int, -(1 << 63), (1 << 63) - 1)}
    for key, (kind, lo, hi) in checks.items():
        if key in p and (isinstance(p[key], bool) or not isinstance(p[key], kind) or not lo <= p[key] <= hi):
            raise ValueError(f"params.{key} must be a number in [{lo}, {hi}]")
    return GenerationParams(**{**p, "stop": tuple(stop)})


def answer_llm(llm: Any, fn: Any, args: Any, *, deadline: float, slice_size: int = 512,
               pace: dict[str, float] | None = None) -> Any:
    """The JSON answer to one LLM request (see the module docstring for how it keeps to ``deadline``).

    ``deadline``: a ``time.monotonic()`` value; ``slice_size``: most prompts run as one slice;
    ``pace``: measured seconds per prompt by kind of request, updated here (pass the same dict
    for every request of one run). Raises TimeoutError once the deadline has passed (also from
    inside the backend), ValueError/RuntimeError for a bad request (sent back to the adapter
    as an LLMError)."""
    if llm is None:
        raise RuntimeError("the harness has no LLM for this run; set [requirements] llm = true in "
                           "submission.toml and pass --backend/--model")
    if not isinstance(args, Mapping):
        raise ValueError("args must be an object")
    if time.monotonic() >= deadline:
        raise TimeoutError
    if fn == "count_tokens":
        with deadline_scope(deadline):
            return llm.count_tokens(chat_from_list(args.get("chat")))
    raw = args.get("chats")
    if not isinstance(raw, list):
        raise ValueError("chats must be a list of chats")
    chats = [chat_from_list(c) for c in raw]
    if fn == "generate":
        params = _params(args.get("params"))
        kind = f"generate:{params.max_tokens if params is not None else 'default'}"
        run = lambda part: [asdict(c) for c in llm.generate(part, params)]  # noqa: E731
    elif fn == "choice_logprobs":
        choices = args.get("choices")
        if not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices):
            raise ValueError("choices must be a non-empty list of strings")
        if len(choices) > MAX_CHOICES or max(map(len, choices)) > MAX_CHOICE_CHARS:
            # a backend's cost grows with the answers scored (the transformers backend's variant dedup is
            # quadratic), and one request runs to its end: it must stay small enough to fit the time limit
            raise ValueError(f"at most {MAX_CHOICES} choices of at most {MAX_CHOICE_CHARS} characters each")
        kind = f"choice_logprobs:{len(choices)}"
        run = lambda part: [dict(d) for d in llm.choice_logprobs(part, choices)]  # noqa: E731
    else:
        raise ValueError(f"unknown LLM function {str(fn)[:40]!r}")
    pace = {} if pace is None else pace
    out: list[Any] = []
    most = max(1, int(slice_size))
    start = 0
    with deadline_scope(deadline):
        while start < len(chats):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            per = pace.get(kind)
            n = min(most, PROBE) if per is None else max(1, min(most, int(SHARE * left / max(per, 1e-6))))
            part = chats[start:start + n]
            t0 = time.monotonic()
            out += run(part)
            rate = (time.monotonic() - t0) / len(part)
            pace[kind] = rate if per is None else (per + rate) / 2
            start += len(part)
    return out
