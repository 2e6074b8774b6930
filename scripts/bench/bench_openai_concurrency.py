"""How many requests in flight keep an OpenAI-compatible server full: replay one workload at several concurrencies.

    python scripts/bench/bench_openai_concurrency.py --log RUN/requests.jsonl --base-url http://127.0.0.1:8000/v1
    python scripts/bench/bench_openai_concurrency.py --log RUN/requests.jsonl --levels 8,16,32,64 --copies 2

The workload is the chat requests one side of a ``bench_vs_reference.py`` run sent (its proxy log,
``--side ours`` by default): the same messages, reply caps, stop strings and temperature.
Each trial replays it through this project's openai backend (:class:`OpenAILLM`, no request cache)
with ``concurrency`` = one of ``--levels`` and the batch size that concurrency gets by default, in
the backend's order. ``--copies`` replays the workload that many times within a trial, each copy
as if for other users. Every trial (and copy) puts its own salt at the start of every system
message, so no trial finds another's prompts in the server's prefix cache while requests within a
trial share prefixes as in the run. Levels are run in a rotated order on each ``--repeats`` so a
drift in the machine's load does not favour one level.

Prints per level: wall seconds (median over repeats), requests per second, prompt and completion
tokens per second (the server's counts), and the ratio to the slowest level. Read ratios on a shared
machine; the seconds move with whatever else runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from personalrewardbench.data.schema import Message  # noqa: E402
from personalrewardbench.llm.base import GenerationParams  # noqa: E402
from personalrewardbench.llm.openai_backend import BATCH_WAVES, OpenAILLM  # noqa: E402


def workload(log: Path, side: str) -> list[tuple[list[Message], GenerationParams]]:
    """(chat, params) of every successful chat request of ``side`` in a proxy log, in log order."""
    out = []
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("side") != side or rec.get("status", 200) >= 400 or not rec.get("messages"):
            continue
        p = rec.get("params") or {}
        stop = p.get("stop") or ()
        params = GenerationParams(max_tokens=int(p.get("max_tokens") or 256),
                                  temperature=float(p.get("temperature") or 0.0),
                                  stop=tuple([stop] if isinstance(stop, str) else stop))
        out.append(([Message(m["role"], str(m["content"])) for m in rec["messages"]], params))
    if not out:
        raise SystemExit(f"no successful chat requests of side {side!r} in {log}")
    return out


def salted(chat: list[Message], salt: str) -> list[Message]:
    """``chat`` with ``salt`` at the start of its system message (or a system message of it)."""
    if chat and chat[0].role == "system":
        return [Message("system", f"[{salt}] {chat[0].content}"), *chat[1:]]
    return [Message("system", f"[{salt}]"), *chat]


def trial(url: str, model: str | None, work: list[tuple[list[Message], GenerationParams]], concurrency: int,
          copies: int) -> dict[str, Any]:
    """Replay ``copies`` salted copies of ``work`` at ``concurrency``; wall seconds and server token counts."""
    llm = OpenAILLM(model, base_url=url, use_cache=False, concurrency=concurrency, progress=False)
    groups: dict[GenerationParams, list[list[Message]]] = {}
    for c in range(copies):
        salt = f"{uuid.uuid4().hex[:12]}-{c}"
        for chat, params in work:
            groups.setdefault(params, []).append(salted(chat, salt))
    t0 = time.perf_counter()
    for params, chats in groups.items():  # one call per parameter set, as a method's phase sends them
        llm.generate(chats, params)
    wall = time.perf_counter() - t0
    u = llm.usage
    llm.close()
    return {"concurrency": concurrency, "wall_s": wall, "requests": u.calls, "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens, "failed": u.failed_requests, "retries": u.retries}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--log", type=Path, required=True, help="a bench_vs_reference run's requests.jsonl")
    ap.add_argument("--side", default="ours", help="whose requests to replay (default ours)")
    ap.add_argument("--base-url", required=True, help="the server, e.g. http://127.0.0.1:8000/v1")
    ap.add_argument("--model", default=None, help="model name on the server (default: its first)")
    ap.add_argument("--levels", default="8,16,32,64", help="concurrencies to try (default 8,16,32,64)")
    ap.add_argument("--copies", type=int, default=1, help="copies of the workload per trial (default 1)")
    ap.add_argument("--repeats", type=int, default=1, help="trials per level (default 1)")
    ap.add_argument("--json", type=Path, default=None, help="also write every trial here")
    args = ap.parse_args(argv)
    work = workload(args.log, args.side)
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    runs: dict[int, list[dict[str, Any]]] = {c: [] for c in levels}
    for r in range(args.repeats):
        for c in levels[r % len(levels):] + levels[:r % len(levels)]:
            res = trial(args.base_url, args.model, work, c, args.copies)
            runs[c].append(res)
            print(f"  concurrency {c:>3}: {res['wall_s']:.1f}s ({res['requests']} requests, {res['failed']} failed)",
                  file=sys.stderr, flush=True)
    print(f"{len(work)} requests x {args.copies} copies per trial, {args.repeats} trial(s) per level; "
          f"batch size {BATCH_WAVES} x concurrency")
    print(f"{'concurrency':>11} {'wall s':>8} {'req/s':>7} {'prompt tok/s':>13} {'compl. tok/s':>13} {'vs slowest':>10}")
    med = {c: statistics.median(x["wall_s"] for x in runs[c]) for c in levels}
    slowest = max(med.values())
    for c in levels:
        x = runs[c][0]
        print(f"{c:>11} {med[c]:>8.1f} {x['requests'] / med[c]:>7.2f} {x['prompt_tokens'] / med[c]:>13.0f} "
              f"{x['completion_tokens'] / med[c]:>13.1f} {slowest / med[c]:>9.2f}x")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
