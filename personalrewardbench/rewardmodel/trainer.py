"""Bradley-Terry reward-model training: loss = -log sigmoid(r(chosen) - r(rejected)).

Validation loss is measured ``evals_per_epoch`` times per epoch; the best state is kept and
training stops after ``patience`` evaluations without improvement. At every evaluation the
full training state is written to ``resume_path``, so an interrupted run continues from there.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from personalrewardbench.rewardmodel.checkpoints import BTExample, load_trainable_into
from personalrewardbench.rewardmodel.formatting import RMItem, encode_item, pad_batch
from personalrewardbench.rewardmodel.lora import trainable_state
from personalrewardbench.rewardmodel.scoring import autocast, rewards


@dataclass(frozen=True)
class BTConfig:
    epochs: int = 2
    lr: float = 3e-5
    batch_size: int = 16
    grad_accum: int = 1
    max_length: int = 512
    finetune: str = "full"  # "full" or "lora"
    lora_r: int = 16
    lora_alpha: float = 32.0
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = field(default=("query", "value", "q_proj", "v_proj", "c_attn", "qkv_proj", "Wqkv"))
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    max_grad_norm: float = 1.0
    evals_per_epoch: int = 1
    patience: int = 2
    bf16: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.finetune not in ("full", "lora"):
            raise ValueError(f"finetune must be 'full' or 'lora', not {self.finetune!r}")
        for name in ("epochs", "batch_size", "grad_accum", "max_length", "evals_per_epoch", "patience", "lora_r"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["lora_targets"] = list(self.lora_targets)
        return d


def _pair_loss(model: Any, tok: Any, enc_c: list[dict], enc_r: list[dict], device: str, bf16: bool) -> tuple[Any, Any]:
    import torch.nn.functional as F

    with autocast(device, bf16):
        r = rewards(model, pad_batch(tok, enc_c + enc_r, device))
    margin = r[: len(enc_c)] - r[len(enc_c):]
    return -F.logsigmoid(margin).mean(), margin.detach()


def evaluate_pairs(model: Any, tok: Any, encs: Sequence[tuple[dict, dict]], cfg: BTConfig, device: str) -> tuple[float, float]:
    """(mean BT loss, accuracy) over encoded (chosen, rejected) pairs; no gradients."""
    import torch

    model.eval()
    total, correct = 0.0, 0
    with torch.inference_mode():
        for s in range(0, len(encs), cfg.batch_size):
            chunk = encs[s:s + cfg.batch_size]
            loss, margin = _pair_loss(model, tok, [c for c, _ in chunk], [r for _, r in chunk], device, cfg.bf16)
            total += float(loss) * len(chunk)
            correct += int((margin > 0).sum())
    return total / max(1, len(encs)), correct / max(1, len(encs))


def encode_examples(tok: Any, examples: Sequence[BTExample], max_length: int) -> list[tuple[dict, dict]]:
    cache: dict[RMItem, dict] = {}

    def enc(ctx: tuple, resp: str, persona: str | None) -> dict:
        it = RMItem(ctx, resp, persona)
        if it not in cache:
            cache[it] = encode_item(tok, it, max_length)
        return cache[it]

    return [(enc(e.context, e.chosen, e.persona), enc(e.context, e.rejected, e.persona)) for e in examples]


def train_bradley_terry(model: Any, tok: Any, train: Sequence[BTExample], val: Sequence[BTExample], cfg: BTConfig, *,
                        device: str = "cpu", resume_path: Path | None = None,
                        show_progress: bool = False) -> dict[str, Any]:
    """Train ``model`` in place (only parameters with requires_grad) and return a training report."""
    import torch
    from tqdm.auto import tqdm

    if not train:
        raise ValueError("no training pairs: every user has an empty train split")
    t0 = time.perf_counter()
    enc_train = encode_examples(tok, train, cfg.max_length)
    enc_val = encode_examples(tok, val, cfg.max_length)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    batches_per_epoch = math.ceil(len(enc_train) / cfg.batch_size)
    total_batches = batches_per_epoch * cfg.epochs
    total_steps = max(1, math.ceil(total_batches / cfg.grad_accum))
    warmup = int(cfg.warmup_ratio * total_steps)

    def lr_lambda(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    sched = torch.optim.lr_scheduler.LambdaLR(optim, lr_lambda)
    eval_at = {min(batches_per_epoch, round(batches_per_epoch * (k + 1) / cfg.evals_per_epoch)) - 1
               for k in range(cfg.evals_per_epoch)}
    state: dict[str, Any] = {"batch": 0, "history": [], "best_val": math.inf, "best_state": None, "bad": 0,
                             "stopped_early": False, "resumed_from_batch": 0}
    if resume_path is not None and resume_path.exists():
        saved = torch.load(resume_path, map_location="cpu", weights_only=False)
        load_trainable_into(model, saved["trainable"])
        optim.load_state_dict(saved["optim"])
        sched.load_state_dict(saved["sched"])
        state.update(saved["state"])
        state["resumed_from_batch"] = state["batch"]

    torch.manual_seed(cfg.seed * 1_000_003 + state["batch"])  # dropout masks: reproducible, also after a resume
    bar = tqdm(total=total_batches, initial=state["batch"], desc="bt-train", disable=None if show_progress else True)
    run_loss, run_n = 0.0, 0
    b = state["batch"]
    while b < total_batches and not state["stopped_early"]:
        epoch, pos = divmod(b, batches_per_epoch)
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(enc_train))
        idx = order[pos * cfg.batch_size:(pos + 1) * cfg.batch_size]
        model.train()
        loss, _ = _pair_loss(model, tok, [enc_train[i][0] for i in idx], [enc_train[i][1] for i in idx], device, cfg.bf16)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {float(loss)} at batch {b}; lower lr (now {cfg.lr})")
        (loss / cfg.grad_accum).backward()
        run_loss += loss.item() * len(idx)
        run_n += len(idx)
        is_eval = pos in eval_at
        if (b + 1) % cfg.grad_accum == 0 or is_eval or b + 1 == total_batches:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optim.step()
            sched.step()
            optim.zero_grad(set_to_none=True)
        b += 1
        bar.update(1)
        if is_eval:
            entry = {"batch": b, "epoch": epoch + (pos + 1) / batches_per_epoch, "train_loss": run_loss / max(1, run_n)}
            run_loss, run_n = 0.0, 0
            if enc_val:
                entry["val_loss"], entry["val_accuracy"] = evaluate_pairs(model, tok, enc_val, cfg, device)
                if entry["val_loss"] < state["best_val"] - 1e-6:
                    state["best_val"], state["best_state"], state["bad"] = entry["val_loss"], trainable_state(model), 0
                else:
                    state["bad"] += 1
                    state["stopped_early"] = state["bad"] >= cfg.patience
            state["history"].append(entry)
            bar.set_postfix({k: round(v, 4) for k, v in entry.items() if "loss" in k})
            state["batch"] = b
            if resume_path is not None:
                resume_path.parent.mkdir(parents=True, exist_ok=True)
                tmp = resume_path.with_suffix(".tmp")
                torch.save({"trainable": trainable_state(model), "optim": optim.state_dict(),
                            "sched": sched.state_dict(), "state": state}, tmp)
                os.replace(tmp, resume_path)
    bar.close()
    if state["best_state"] is not None:
        load_trainable_into(model, state["best_state"])
    model.eval()
    return {"history": state["history"], "best_val_loss": None if state["best_val"] == math.inf else state["best_val"],
            "stopped_early": state["stopped_early"], "batches": b, "batches_planned": total_batches,
            "resumed_from_batch": state["resumed_from_batch"], "n_train": len(train), "n_val": len(val),
            "seconds": time.perf_counter() - t0}
