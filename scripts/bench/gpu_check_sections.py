"""The measured sections of gpu_check.py (see its docstring); each takes (Context, seconds allowed)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHOICES = ["First", "Second"]


@dataclass
class Context:
    make: Callable[..., Any]  # make(use_cache, prefix_cache_mb, min_shared) -> TransformersLLM
    device: str
    sizes: dict[str, Any]
    minilm: Path
    report: Any

    def sync(self) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()

    def peak_gib(self) -> float | None:
        if not self.device.startswith("cuda"):
            return None
        import torch

        return torch.cuda.max_memory_allocated() / 2**30


def timed(ctx: Context, fn: Callable[[], Any]) -> tuple[Any, float]:
    ctx.sync()
    t = time.perf_counter()
    out = fn()
    ctx.sync()
    return out, time.perf_counter() - t


def one_at_a_time(ctx: Context, items: Sequence[Any], fn: Callable[[Any], Any], budget_s: float) -> tuple[int, float]:
    """Run ``fn`` on items in order until they are done or ``budget_s`` is spent: (items done, seconds)."""
    ctx.sync()
    t = time.perf_counter()
    done = 0
    for it in items:
        fn(it)
        done += 1
        ctx.sync()
        if time.perf_counter() - t > budget_s:
            break
    return done, time.perf_counter() - t


def _rate(n: float, s: float, unit: str) -> str:
    return f"{n / s:,.1f} {unit}/s" if s > 0 else "-"


def choice(ctx: Context, budget: float) -> None:
    from bench_llm_choice import default_prompts

    chats = default_prompts(ctx.sizes["choice_n"])
    llm = ctx.make()
    llm.choice_logprobs(chats[:2], CHOICES)  # warm-up: first-call allocations and kernels
    _, t_b = timed(ctx, lambda: llm.choice_logprobs(chats, CHOICES))
    single = ctx.make()
    n1, t_1 = one_at_a_time(ctx, chats, lambda c: single.choice_logprobs([c], CHOICES), budget * 0.6)
    ratio = (len(chats) / t_b) / (n1 / t_1)
    ctx.report.add(f"choice scoring, {len(chats)} prompts", "batched " + _rate(len(chats), t_b, "prompts"),
                   f"1-by-1 {_rate(n1, t_1, 'prompts')} ({n1})", ratio, ">=10x", ctx.peak_gib())


def generate(ctx: Context, budget: float) -> None:
    from bench_llm_choice import EXPLAIN, default_prompts

    from personalrewardbench.llm import GenerationParams

    n, tokens = ctx.sizes["generate_n"], ctx.sizes["generate_tokens"]
    chats = default_prompts(n, request=EXPLAIN)
    params = GenerationParams(max_tokens=tokens, temperature=0.0)
    llm = ctx.make()
    llm.generate(chats[:2], GenerationParams(max_tokens=2, temperature=0.0))  # warm-up
    out, t_b = timed(ctx, lambda: llm.generate(chats, params))
    made = sum(c.completion_tokens for c in out)
    single = ctx.make()
    counted: list[int] = []
    n1, t_1 = one_at_a_time(ctx, chats, lambda c: counted.append(single.generate([c], params)[0].completion_tokens),
                            budget * 0.6)
    ratio = (made / t_b) / (sum(counted) / t_1) if counted and sum(counted) else None
    ctx.report.add(f"generation, {n} prompts x {tokens} tok", "batched " + _rate(made, t_b, "tok"),
                   f"1-by-1 {_rate(sum(counted), t_1, 'tok')} ({n1})", ratio, "", ctx.peak_gib())


def prefix(ctx: Context, budget: float) -> None:
    from bench_llm_choice import memory_prompts

    base = ctx.make()
    chats = memory_prompts(ctx.sizes["memory_n"], base)
    tokens = sum(base.count_tokens(c) for c in chats)
    base.choice_logprobs(chats[:1], CHOICES)  # warm-up
    on = ctx.make()
    _, t_on = timed(ctx, lambda: on.choice_logprobs(chats, CHOICES))
    off = ctx.make(prefix_cache_mb=0, min_shared=10**9)
    _, t_off = timed(ctx, lambda: off.choice_logprobs(chats, CHOICES))
    ctx.report.add(f"prefix reuse, {len(chats)} memory prompts", "on " + _rate(len(chats), t_on, "prompts"),
                   "off " + _rate(len(chats), t_off, "prompts"), t_off / t_on, "", ctx.peak_gib(),
                   f"ok, {on.engine.computed_tokens:,} of {tokens:,} prompt tokens computed with reuse")


def _sme_config(wanted: dict[str, Any]) -> dict[str, Any]:
    """The settings of ``wanted`` that this version of the method knows (names may change between versions)."""
    from personalrewardbench.methods import load_method

    known = set(load_method("synthesizeme").get_config())
    return {k: v for k, v in wanted.items() if k in known}


def synthesizeme(ctx: Context, budget: float) -> None:
    from personalrewardbench.data.synthetic import sample_benchmark
    from personalrewardbench.methods import MethodEnv, load_method

    users = ctx.sizes["sme_users"]
    histories = sample_benchmark(seed=0, n_users=users, n_train=ctx.sizes["sme_train"], n_val=1,
                                  n_test=1).histories()
    cfg = _sme_config({"num_candidates": ctx.sizes["sme_candidates"], "max_judge_tokens": ctx.sizes["sme_judge_tokens"],
                       "max_persona_tokens": ctx.sizes["sme_persona_tokens"], "max_tries": 1})

    def fit(llm: Any, hs: Sequence[Any]) -> float:
        method = load_method("synthesizeme", {**cfg, "batch_across_users": True})
        method.setup(MethodEnv(seed=0, llm=llm, show_progress=False))
        return timed(ctx, lambda: method.fit(list(hs)))[1]

    batched = ctx.make(use_cache=True)
    t_b = fit(batched, histories)
    # User by user on one LLM, as the method's loop (batch_across_users=false) does: a group of one user is
    # exactly one step of that loop. Users run until this mode's share of the budget is spent.
    loop = ctx.make(use_cache=True)
    loop_s, done = 0.0, 0
    for h in histories:
        loop_s, done = loop_s + fit(loop, [h]), done + 1
        if loop_s > budget * 0.55:
            break
    calls_b, loop_calls = batched.usage.calls, loop.usage.calls
    per_b, per_1 = t_b / len(histories), loop_s / done
    same = f"calls {calls_b} vs {loop_calls}" + (" (same)" if done == len(histories) and calls_b == loop_calls else "")
    ctx.report.add(f"SynthesizeMe fit, {len(histories)} users", f"batched {per_b:.2f} s/user",
                   f"1-by-1 {per_1:.2f} s/user ({done})", per_1 / per_b, ">=3x", ctx.peak_gib(), f"ok, {same}")


def bt_rm(ctx: Context, budget: float) -> None:
    from personalrewardbench.data.synthetic import sample_benchmark
    from personalrewardbench.rewardmodel.checkpoints import BTExample
    from personalrewardbench.rewardmodel.models import load_reward_model
    from personalrewardbench.rewardmodel.trainer import BTConfig, train_bradley_terry

    n, batch = ctx.sizes["rm_pairs"], ctx.sizes["rm_batch"]
    bench = sample_benchmark(seed=1, n_users=max(2, n // 6), n_train=(6, 6), n_val=1, n_test=1)
    train = [BTExample(tuple(p.context), p.chosen, p.rejected) for p in bench.pairs_of("train")][:n]
    tok, model = load_reward_model(str(ctx.minilm), device=ctx.device, bf16=True)
    for p in model.parameters():
        p.requires_grad_(True)
    cfg = BTConfig(epochs=1, batch_size=batch, max_length=ctx.sizes["rm_max_length"], evals_per_epoch=1)
    train_bradley_terry(model, tok, train[:batch], [], cfg, device=ctx.device)  # warm-up: one step
    rep, seconds = timed(ctx, lambda: train_bradley_terry(model, tok, train, [], cfg, device=ctx.device))
    steps = rep["batches"]
    ctx.report.add(f"bt-rm training, MiniLM, {len(train)} pairs", f"{steps / seconds:,.2f} steps/s",
                   f"{len(train) / seconds:,.1f} pairs/s", None, "", ctx.peak_gib(),
                   f"ok, batch {batch}, {steps} steps, {'bf16' if ctx.device.startswith('cuda') else 'fp32'}")


SECTIONS: dict[str, Callable[[Context, float], None]] = {
    "choice": choice, "generate": generate, "prefix": prefix, "synthesizeme": synthesizeme, "bt-rm": bt_rm,
}
