"""The CUDA path (bf16 autocast training, LoRA and full, checkpoint reuse). Skipped without a GPU."""

from __future__ import annotations

import pytest
import torch

from personalrewardbench.rewardmodel.finetune import train_or_load
from personalrewardbench.rewardmodel.formatting import RMItem
from personalrewardbench.rewardmodel.scoring import RewardScorer
from personalrewardbench.rewardmodel.trainer import BTConfig
from tests.rm.test_training import separable

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (expected on a CPU-only machine; runs where torch sees one)")]


@pytest.mark.parametrize("finetune,lr", [("full", 1e-4), ("lora", 2e-3)])
def test_bf16_training_on_cuda_lowers_the_loss_and_reuses_the_checkpoint(tmp_path, finetune, lr):
    cfg = BTConfig(epochs=4, lr=lr, batch_size=8, max_length=64, finetune=finetune, lora_r=8, warmup_ratio=0.0,
                   patience=4, bf16=True)
    train, val = separable(32), separable(8, offset=5)
    tok, model, report = train_or_load(None, cfg, train, val, cache_dir=tmp_path, device="cuda")
    hist = report["history"]
    assert report["reused_checkpoint"] is False and len(hist) >= 2
    assert hist[-1]["val_loss"] < hist[0]["val_loss"] and hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert next(model.parameters()).is_cuda
    items = [RMItem(ex.context, ex.chosen) for ex in val]
    first = RewardScorer(tok, model, device="cuda", bf16=True).score(items)
    tok, model2, again = train_or_load(None, cfg, train, val, cache_dir=tmp_path, device="cuda")
    assert again["reused_checkpoint"] is True
    assert RewardScorer(tok, model2, device="cuda", bf16=True).score(items) == pytest.approx(first, abs=1e-2)
