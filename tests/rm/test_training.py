"""Bradley-Terry training with the real MiniLM: loss goes down, LoRA, checkpoint reuse, resume."""

from __future__ import annotations

import pytest
import torch

from personalrewardbench.data.schema import Message
from personalrewardbench.rewardmodel import trainer as trainer_mod
from personalrewardbench.rewardmodel.checkpoints import BTExample, CheckpointStore, checkpoint_key
from personalrewardbench.rewardmodel.finetune import train_or_load
from personalrewardbench.rewardmodel.formatting import RMItem
from personalrewardbench.rewardmodel.lora import LoRALinear, apply_lora, merge_lora
from personalrewardbench.rewardmodel.models import load_reward_model, model_identity
from personalrewardbench.rewardmodel.scoring import RewardScorer
from personalrewardbench.rewardmodel.trainer import BTConfig, encode_examples, evaluate_pairs, train_bradley_terry

SUBJECTS = ["the weather", "my garden", "a used car", "the train times", "a birthday cake", "my laptop",
            "the museum", "a job offer", "the concert", "our holiday", "the library", "a new phone"]


def separable(n: int, offset: int = 0) -> list[BTExample]:
    """Polite, helpful answers beat rude refusals: separable from the response text alone."""
    out = []
    for i in range(n):
        s = SUBJECTS[(i + offset) % len(SUBJECTS)]
        ctx = (Message("user", f"Can you tell me about {s}?"),)
        out.append(BTExample(ctx, f"Happy to help! Here is what I know about {s}, clearly explained.",
                             f"No. Figure out {s} yourself, I will not answer."))
    return out


def test_bt_training_lowers_the_loss_on_a_separable_set(tmp_path):
    cfg = BTConfig(epochs=3, lr=2e-3, batch_size=4, max_length=40, warmup_ratio=0.0, patience=3, finetune="lora",
                   lora_r=4, lora_dropout=0.0)
    tok, model = load_reward_model(None, seed=0)
    apply_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets)
    train, val = separable(8), separable(4, offset=5)
    enc_val = encode_examples(tok, val, cfg.max_length)
    before, _ = evaluate_pairs(model, tok, enc_val, cfg, "cpu")
    report = train_bradley_terry(model, tok, train, val, cfg)
    after, acc = evaluate_pairs(model, tok, enc_val, cfg, "cpu")
    assert after < before - 0.1, (before, after, report["history"])
    assert acc == 1.0
    assert report["history"][-1]["train_loss"] < report["history"][0]["train_loss"]
    assert len(report["history"]) == 3 and report["best_val_loss"] == pytest.approx(min(
        h["val_loss"] for h in report["history"]))


def test_lora_starts_at_the_base_model_and_merges_exactly():
    tok, model = load_reward_model(None, seed=0)
    items = [RMItem((Message("user", "hi"),), r) for r in ("hello there", "go away")]
    base = RewardScorer(tok, model).score(items)
    names = apply_lora(model, r=4, alpha=8)
    assert names and all(n.endswith(("query", "value")) for n in names)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or n.startswith(("classifier", "bert.pooler")) for n in trainable)
    assert RewardScorer(tok, model).score(items) == pytest.approx(base, abs=1e-6)  # B = 0 at start
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LoRALinear):
                m.lora_B.normal_(0, 0.05)
    unmerged = RewardScorer(tok, model).score(items)
    assert abs(unmerged - base).max() > 1e-4
    assert merge_lora(model) == len(names)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert RewardScorer(tok, model).score(items) == pytest.approx(unmerged, abs=1e-4)


def test_checkpoint_is_reused_for_same_config_and_data_and_not_otherwise(tmp_path):
    cfg = BTConfig(epochs=1, lr=1e-4, batch_size=4, max_length=40, finetune="lora", lora_r=4)
    train, val = separable(8), separable(2, offset=3)
    items = [RMItem(ex.context, ex.chosen) for ex in val]
    tok, m1, r1 = train_or_load(None, cfg, train, val, cache_dir=tmp_path)
    assert r1["reused_checkpoint"] is False and CheckpointStore(tmp_path).is_done(r1["checkpoint_key"])
    tok, m2, r2 = train_or_load(None, cfg, train, val, cache_dir=tmp_path)
    assert r2["reused_checkpoint"] is True and r2["checkpoint_key"] == r1["checkpoint_key"]
    assert RewardScorer(tok, m2).score(items) == pytest.approx(RewardScorer(tok, m1).score(items), abs=1e-5)
    # Different data or settings -> a different checkpoint.
    _, _, r3 = train_or_load(None, cfg, train[:-1], val, cache_dir=tmp_path)
    assert r3["reused_checkpoint"] is False and r3["checkpoint_key"] != r1["checkpoint_key"]
    base = model_identity(None)
    key = checkpoint_key(base, {**cfg.to_dict(), "precision": "fp32"}, r1["data_hash"])
    assert key == r1["checkpoint_key"]
    other = BTConfig(**{**cfg.to_dict(), "lr": 5e-5, "lora_targets": tuple(cfg.lora_targets)})
    assert checkpoint_key(base, {**other.to_dict(), "precision": "fp32"}, r1["data_hash"]) != key
    assert checkpoint_key(base, {**cfg.to_dict(), "precision": "bf16-autocast"}, r1["data_hash"]) != key


def test_interrupted_training_resumes_from_the_last_evaluation(tmp_path, monkeypatch):
    cfg = BTConfig(epochs=2, lr=1e-4, batch_size=4, max_length=40, evals_per_epoch=2, patience=10, finetune="lora",
                   lora_r=4)
    train, val = separable(8), separable(2, offset=3)
    real = trainer_mod._pair_loss
    calls = {"n": 0}

    def crashing(model, *a, **k):
        if model.training:
            calls["n"] += 1
            if calls["n"] == 4:  # the 4th training batch (2nd epoch, first half)
                raise KeyboardInterrupt
        return real(model, *a, **k)

    monkeypatch.setattr(trainer_mod, "_pair_loss", crashing)
    with pytest.raises(KeyboardInterrupt):
        train_or_load(None, cfg, train, val, cache_dir=tmp_path)
    partial = list((tmp_path / "rm-checkpoints").glob("*/partial.pt"))
    assert len(partial) == 1
    monkeypatch.setattr(trainer_mod, "_pair_loss", real)
    _, _, report = train_or_load(None, cfg, train, val, cache_dir=tmp_path)
    assert report["resumed_from_batch"] == 3 and report["batches"] == 4
    assert [h["batch"] for h in report["history"]] == [1, 2, 3, 4]
    assert not partial[0].exists()  # cleaned up once the finished checkpoint is written


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="finetune"):
        BTConfig(finetune="qlora")
    with pytest.raises(ValueError, match="batch_size"):
        BTConfig(batch_size=0)
