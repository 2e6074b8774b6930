"""Train a Bradley-Terry reward model, or reuse the cached checkpoint for the same base, config and data."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from personalrewardbench.rewardmodel.checkpoints import (
    BTExample,
    CheckpointStore,
    checkpoint_key,
    examples_hash,
    load_trainable_into,
)
from personalrewardbench.rewardmodel.lora import apply_lora, merge_lora
from personalrewardbench.rewardmodel.models import load_reward_model, model_identity
from personalrewardbench.rewardmodel.trainer import BTConfig, train_bradley_terry


def _prepared_model(base: str | None, cfg: BTConfig, device: str, trust_remote_code: bool) -> tuple[Any, Any]:
    """Base model ready for training/loading: fp32 weights (bf16 frozen base for LoRA on CUDA)."""
    tok, model = load_reward_model(base, device=device, bf16=cfg.finetune == "lora" and cfg.bf16, seed=cfg.seed,
                                   trust_remote_code=trust_remote_code)
    if cfg.finetune == "lora":
        apply_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets)
    else:
        model.float()
        for p in model.parameters():
            p.requires_grad_(True)
    return tok, model


def train_or_load(base: str | None, cfg: BTConfig, train: Sequence[BTExample], val: Sequence[BTExample], *,
                  cache_dir: Path | str, device: str = "cpu", reuse: bool = True, show_progress: bool = False,
                  trust_remote_code: bool = False) -> tuple[Any, Any, dict[str, Any]]:
    """(tokenizer, trained model in eval mode, report). The report says whether a checkpoint was reused."""
    identity = model_identity(base)
    data_hash = examples_hash(train, val)
    precision = "bf16-autocast" if cfg.bf16 and device.startswith("cuda") else "fp32"
    key = checkpoint_key(identity, {**cfg.to_dict(), "precision": precision}, data_hash)
    store = CheckpointStore(cache_dir)
    t0 = time.perf_counter()
    tok, model = _prepared_model(base, cfg, device, trust_remote_code)
    if reuse and store.is_done(key):
        state, meta = store.load(key)
        load_trainable_into(model, state)
        report = {**meta.get("report", {}), "reused_checkpoint": True}
    else:
        report = train_bradley_terry(model, tok, train, val, cfg, device=device, resume_path=store.partial_path(key),
                                     show_progress=show_progress)
        trainable = {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad}
        store.save(key, trainable, {"base_model": identity, "config": cfg.to_dict(), "precision": precision,
                                    "data_hash": data_hash,
                                    "report": report})
        report = {**report, "reused_checkpoint": False}
    merge_lora(model)
    model.eval()
    report.update({"checkpoint": str(store.folder(key)), "checkpoint_key": key, "base_model_identity": identity,
                   "data_hash": data_hash, "seconds_fit": time.perf_counter() - t0})
    return tok, model, report
