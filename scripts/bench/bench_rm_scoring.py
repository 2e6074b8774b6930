"""Reward-model scoring throughput on this machine: batched vs one pair at a time, side by side.

    python scripts/bench/bench_rm_scoring.py [--model PATH_OR_ID] [--pairs 96] [--batch-size 32] [--device cpu]

Both modes score the same pairs with the same model in one process (one warm-up pass first);
the two timings are interleaved over --repeats rounds and the median of each is reported.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from personalrewardbench.data.schema import Message
from personalrewardbench.rewardmodel.formatting import RMItem
from personalrewardbench.rewardmodel.models import describe_model, load_reward_model
from personalrewardbench.rewardmodel.scoring import RewardScorer

WORDS = ("the model answer user question explain detail example because people often think about "
         "science history travel food health money music code data learn simple clear").split()


def make_pairs(n: int, seed: int = 0) -> list[tuple[RMItem, RMItem]]:
    rng = random.Random(seed)

    def text(lo: int, hi: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi))) + "."

    out = []
    for _ in range(n):
        ctx = (Message("user", text(10, 40)),)
        out.append((RMItem(ctx, text(40, 160)), RMItem(ctx, text(40, 160))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="HF id or path (default: embedded MiniLM)")
    ap.add_argument("--pairs", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    tok, model = load_reward_model(args.model, device=args.device)
    pairs = make_pairs(args.pairs)
    firsts, seconds = [a for a, _ in pairs], [b for _, b in pairs]
    batched = RewardScorer(tok, model, device=args.device, max_length=args.max_length, batch_size=args.batch_size)
    single = RewardScorer(tok, model, device=args.device, max_length=args.max_length, batch_size=2)
    batched.pair_probabilities(firsts[:8], seconds[:8])  # warm-up
    t_batched, t_single = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        pb = batched.pair_probabilities(firsts, seconds)
        t_batched.append(time.perf_counter() - t)
        t = time.perf_counter()
        ps = [single.pair_probabilities([a], [b])[0] for a, b in pairs]
        t_single.append(time.perf_counter() - t)
    diff = max(abs(x - y) for x, y in zip(pb, ps, strict=True))
    rb, rs = args.pairs / statistics.median(t_batched), args.pairs / statistics.median(t_single)
    print(f"model: {describe_model(args.model)}  device: {args.device}  pairs: {args.pairs}  "
          f"max_length: {args.max_length}  repeats: {args.repeats}")
    print(f"{'mode':32s} {'pairs/s':>10s} {'median s':>10s}")
    print(f"{'batched (batch ' + str(args.batch_size) + ' responses)':32s} {rb:10.1f} {statistics.median(t_batched):10.2f}")
    print(f"{'one pair at a time (batch 2)':32s} {rs:10.1f} {statistics.median(t_single):10.2f}")
    print(f"speed-up batched / one-at-a-time: {rb / rs:.2f}x   max |p difference|: {diff:.2e}")


if __name__ == "__main__":
    main()
