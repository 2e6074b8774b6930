"""Choice scoring with the embedded SmolLM2 on this CPU: batched vs one at a time, prefix reuse, cache.

Workloads of real judge prompts over the synthetic sample benchmark, scored
"First"/"Second" through the transformers backend, all side by side in one run:

- ``default``: the plain pairwise judge (``personalrewardbench.judging.judge_chat``);
  prompts share only the judge instruction;
- ``memory``: the memory judge's prompts (the user's past comparisons before the
  new one, built by the ``memory`` baseline itself); a user's prompts share the
  instruction and the whole history.

For each workload:
1. batched: one ``choice_logprobs`` call over all prompts (empty request cache);
2. one at a time: one call per prompt, same backend class, weights and settings
   (request cache off; the KV prefix store on, as in the batched run);
3. for ``memory`` also: batched with prefix reuse off (``prefix_cache_mb=0`` and no
   sharing inside a batch), to show what prefix reuse buys;
4. a cached rerun of the batched call, answered entirely from the request cache.

And ``generate``: greedy generation of a short explanation for default-judge prompts,
batched vs one at a time (decoding, unlike prefill, is memory-bound on a CPU).

Targets (issue #3): batched >= 3x one-at-a-time throughput; cached rerun >= 100x.

    python scripts/bench/bench_llm_choice.py [--n 256] [--memory-n 64] [--workloads default,memory]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

CHOICES = ["First", "Second"]


EXPLAIN = "Which response is better for this user, and why? Explain in two or three sentences, then name it."


def default_prompts(n: int, request: str | None = None) -> list:
    from personalrewardbench.data.synthetic import sample_benchmark
    from personalrewardbench.judging import judge_chat

    system = ("You are judging which of two assistant responses a particular user would prefer. "
              "Read the conversation and both responses carefully.")
    pairs = sorted(sample_benchmark().pairs, key=lambda p: p.pair_id)
    chats = []
    for i in range(n):
        p = pairs[i % len(pairs)]
        first, second = (p.chosen, p.rejected) if (i // len(pairs)) % 2 == 0 else (p.rejected, p.chosen)
        kw = {"request": request} if request else {}
        chats.append(judge_chat(system, p.context, first, second, **kw))
    return chats


def memory_prompts(n: int, llm: Any) -> list:
    """The memory judge's own prompts for n test queries (both orders of n/2 test pairs)."""
    from personalrewardbench.data.synthetic import sample_benchmark
    from personalrewardbench.evaluate import make_queries
    from personalrewardbench.methods import MethodEnv, load_method

    bench = sample_benchmark(n_users=max(1, n // 8), n_test=4)
    method = load_method("memory")
    method.setup(MethodEnv(seed=0, llm=llm, show_progress=False))
    method.fit(bench.histories())
    queries, _ = make_queries(bench.pairs_of("test"), seed=0)
    return [method._fit_query(llm, q).chat for q in queries[:n]]


def timed(fn: Any) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def run_workload(name: str, chats: list, make: Any, with_reuse_off: bool) -> dict[str, float]:
    batched_llm = make(use_cache=True)
    single_llm = make(use_cache=False)
    tokens = [batched_llm.count_tokens(c) for c in chats]
    print(f"\n[{name}] {len(chats)} judge prompts, {sum(tokens)} prompt tokens (mean {sum(tokens) / len(tokens):.0f}, "
          f"max {max(tokens)}), batch size {batched_llm.batch_size}", flush=True)
    batched, t_batched = timed(lambda: batched_llm.choice_logprobs(chats, CHOICES))
    computed = batched_llm.engine.computed_tokens
    single, t_single = timed(lambda: [single_llm.choice_logprobs([c], CHOICES)[0] for c in chats])
    cached, t_cached = timed(lambda: batched_llm.choice_logprobs(chats, CHOICES))
    diff = max(abs(a[c] - b[c]) for a, b in zip(batched, single, strict=True) for c in CHOICES)
    print(f"batched:                 {t_batched:8.2f} s  {len(chats) / t_batched:6.2f} prompts/s  "
          f"({computed} of {sum(tokens)} prompt tokens computed, the rest reused)", flush=True)
    print(f"one at a time:           {t_single:8.2f} s  {len(chats) / t_single:6.2f} prompts/s", flush=True)
    out = {"batched_s": t_batched, "single_s": t_single, "cached_s": t_cached}
    if with_reuse_off:
        plain = make(use_cache=False, prefix_cache_mb=0, min_shared=10**9)
        _, t_plain = timed(lambda: plain.choice_logprobs(chats, CHOICES))
        print(f"batched, no prefix reuse:{t_plain:8.2f} s  {len(chats) / t_plain:6.2f} prompts/s", flush=True)
        print(f"prefix reuse speed-up (batched):        {t_plain / t_batched:.2f}x", flush=True)
        out["no_reuse_s"] = t_plain
    print(f"cached rerun:            {t_cached:8.4f} s  ({batched_llm.usage.cache_hits} cache hits; equal: "
          f"{cached == batched})", flush=True)
    print(f"batched / one-at-a-time throughput:     {t_single / t_batched:.2f}x (target >= 3x)", flush=True)
    print(f"first run / cached rerun:               {t_batched / t_cached:.0f}x (target >= 100x)", flush=True)
    print(f"max |logprob difference| batched vs one at a time: {diff:.2e}", flush=True)
    return out


def run_generation(chats: list, make: Any, max_tokens: int) -> None:
    """Greedy generation (decoding), batched vs one at a time: where batching pays on a CPU."""
    from personalrewardbench.llm import GenerationParams

    params = GenerationParams(max_tokens=max_tokens, temperature=0.0)
    batched_llm, single_llm = make(use_cache=False), make(use_cache=False)
    print(f"\n[generation] {len(chats)} default-judge prompts, greedy, up to {max_tokens} new tokens", flush=True)
    batched, t_batched = timed(lambda: batched_llm.generate(chats, params))
    single, t_single = timed(lambda: [single_llm.generate([c], params)[0] for c in chats])
    tokens = sum(c.completion_tokens for c in batched)
    same = sum(a.text == b.text for a, b in zip(batched, single, strict=True))
    print(f"batched:                 {t_batched:8.2f} s  {tokens / t_batched:6.1f} generated tokens/s", flush=True)
    print(f"one at a time:           {t_single:8.2f} s  {tokens / t_single:6.1f} generated tokens/s", flush=True)
    print(f"batched / one-at-a-time throughput:     {t_single / t_batched:.2f}x; identical texts: "
          f"{same}/{len(chats)}", flush=True)


def main() -> None:
    import torch

    from personalrewardbench.llm import make_llm

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256, help="default-judge prompts")
    ap.add_argument("--memory-n", type=int, default=64, help="memory-judge prompts")
    ap.add_argument("--workloads", default="default,memory,generate")
    ap.add_argument("--generate-n", type=int, default=32, help="prompts for the generation comparison")
    ap.add_argument("--generate-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=None)
    args = ap.parse_args()
    t = time.perf_counter()
    first = make_llm("transformers", use_cache=False, progress=False)
    print(f"model load (incl. a one-time GGUF conversion into the model cache): {time.perf_counter() - t:.1f} s; "
          f"torch threads {torch.get_num_threads()}", flush=True)
    first.choice_logprobs(default_prompts(2), ["Yes", "No"])  # warm-up (first-call allocations), not timed

    def make(use_cache: bool, prefix_cache_mb: int | None = None, min_shared: int | None = None) -> Any:
        llm = make_llm("transformers", first.model_path, use_cache=use_cache, progress=False,
                       cache_dir=tempfile.mkdtemp(prefix="prb-bench-llm-"), batch_size=args.batch_size,
                       prefix_cache_mb=prefix_cache_mb)
        if min_shared is not None:
            llm.engine.min_shared = min_shared
        return llm

    workloads = args.workloads.split(",")
    if "default" in workloads:
        run_workload("default judge", default_prompts(args.n), make, with_reuse_off=False)
    if "memory" in workloads:
        run_workload("memory judge", memory_prompts(args.memory_n, first), make, with_reuse_off=True)
    if "generate" in workloads:
        run_generation(default_prompts(args.generate_n, request=EXPLAIN), make, args.generate_tokens)


if __name__ == "__main__":
    main()
