"""Choice scoring of judge prompts with the embedded SmolLM2 on this CPU: batched vs one at a time, and cached.

Builds N pairwise judge prompts (the shared judge format of ``personalrewardbench.judging``
over pairs of the synthetic sample benchmark) and scores "First"/"Second" with the
transformers backend, all in one run:

1. batched: one ``choice_logprobs`` call over all N prompts (request cache on, empty cache);
2. one at a time: N calls of one prompt each, through the same backend class and weights
   (request cache off);
3. cached rerun: the batched call again, answered entirely from the request cache.

Targets: batched >= 3x the one-at-a-time throughput; cached rerun >= 100x faster than the first run.

    python scripts/bench/bench_llm_choice.py [--n 256] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import tempfile
import time


def judge_prompts(n: int) -> list:
    from personalrewardbench.data.synthetic import sample_benchmark
    from personalrewardbench.judging import judge_chat

    system = ("You are judging which of two assistant responses a particular user would prefer. "
              "Read the conversation and both responses carefully.")
    pairs = sorted(sample_benchmark().pairs, key=lambda p: p.pair_id)
    chats = []
    for i in range(n):
        p = pairs[i % len(pairs)]
        first, second = (p.chosen, p.rejected) if (i // len(pairs)) % 2 == 0 else (p.rejected, p.chosen)
        chats.append(judge_chat(system, p.context, first, second))
    return chats


def main() -> None:
    from personalrewardbench.llm import make_llm

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=None)
    args = ap.parse_args()
    chats = judge_prompts(args.n)
    choices = ["First", "Second"]
    cache_dir = tempfile.mkdtemp(prefix="prb-bench-llm-")

    t = time.perf_counter()
    batched_llm = make_llm("transformers", cache_dir=cache_dir, batch_size=args.batch_size, progress=False)
    print(f"model load (incl. a one-time GGUF conversion into the model cache): {time.perf_counter() - t:.1f} s", flush=True)
    single_llm = make_llm("transformers", batched_llm.model_path, use_cache=False, batch_size=args.batch_size, progress=False)
    tokens = [batched_llm.count_tokens(c) for c in chats]
    print(f"{args.n} judge prompts, {sum(tokens)} prompt tokens (mean {sum(tokens) / len(tokens):.0f}, "
          f"max {max(tokens)}), batch size {batched_llm.batch_size}, torch threads {_threads()}")
    # warm-up (first-call allocations), not timed and not cached
    single_llm.choice_logprobs(chats[:2], ["Yes", "No"])

    t = time.perf_counter()
    batched = batched_llm.choice_logprobs(chats, choices)
    t_batched = time.perf_counter() - t

    t = time.perf_counter()
    single = [single_llm.choice_logprobs([c], choices)[0] for c in chats]
    t_single = time.perf_counter() - t

    t = time.perf_counter()
    cached = batched_llm.choice_logprobs(chats, choices)
    t_cached = time.perf_counter() - t

    diff = max(abs(a[c] - b[c]) for a, b in zip(batched, single, strict=True) for c in choices)
    print(f"batched:        {t_batched:8.2f} s  {args.n / t_batched:7.1f} prompts/s", flush=True)
    print(f"one at a time:  {t_single:8.2f} s  {args.n / t_single:7.1f} prompts/s", flush=True)
    print(f"cached rerun:   {t_cached:8.4f} s  ({batched_llm.usage.cache_hits} cache hits)", flush=True)
    print(f"batched / one-at-a-time throughput: {t_single / t_batched:.2f}x (target >= 3x)", flush=True)
    print(f"first run / cached rerun:           {t_batched / t_cached:.0f}x (target >= 100x)", flush=True)
    print(f"max |logprob difference| batched vs one at a time: {diff:.2e}; cached equal: {cached == batched}", flush=True)


def _threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    main()
