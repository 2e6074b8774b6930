"""bt-rm: a reward model fine-tuned with the Bradley-Terry loss on all users' train pairs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from personalrewardbench.data.schema import UserHistory
from personalrewardbench.methods import MethodError
from personalrewardbench.rewardmodel.checkpoints import BTExample
from personalrewardbench.rewardmodel.finetune import train_or_load
from personalrewardbench.rewardmodel.rm_method import RewardModelMethod
from personalrewardbench.rewardmodel.trainer import BTConfig


class BradleyTerryRM(RewardModelMethod):
    """Fine-tunes ``model`` (default: embedded MiniLM + a new one-logit head) on every user's train
    pairs, early-stops on their val pairs, then scores like vanilla-rm. With ``use_persona`` the
    user's SynthesizeMe persona is prepended to the context in training and scoring
    (the ``bt-rm-persona`` variant). Checkpoints live under ``env.cache_dir/rm-checkpoints`` and are
    reused when base model, settings and training data are the same.
    """

    name = "bt-rm"
    capabilities = frozenset({"train-rm"})

    def __init__(self, model: str | None = None, epochs: int = 2, lr: float = 3e-5, batch_size: int = 16,
                 grad_accum: int = 1, max_length: int = 512, finetune: str = "full", lora_r: int = 16,
                 lora_alpha: float = 32.0, lora_dropout: float = 0.05, weight_decay: float = 0.01,
                 warmup_ratio: float = 0.05, evals_per_epoch: int = 1, patience: int = 2, bf16: bool = True,
                 score_batch_size: int = 32, use_persona: bool = False, persona_source: str | None = None,
                 persona_method: str = "synthesizeme", persona_method_config: dict[str, Any] | None = None,
                 missing_persona: str = "error", reuse_checkpoint: bool = True, trust_remote_code: bool = False,
                 device: str | None = None) -> None:
        self._init_common(model=model, max_length=max_length, score_batch_size=score_batch_size, bf16=bf16,
                          use_persona=use_persona, persona_source=persona_source, persona_method=persona_method,
                          persona_method_config=persona_method_config, missing_persona=missing_persona,
                          trust_remote_code=trust_remote_code, device=device)
        self.epochs, self.lr, self.batch_size, self.grad_accum = epochs, lr, batch_size, grad_accum
        self.finetune, self.lora_r, self.lora_alpha, self.lora_dropout = finetune, lora_r, lora_alpha, lora_dropout
        self.weight_decay, self.warmup_ratio = weight_decay, warmup_ratio
        self.evals_per_epoch, self.patience, self.reuse_checkpoint = evals_per_epoch, patience, reuse_checkpoint
        self.train_config(seed=0)  # validate settings now: a bad config fails before any work

    def train_config(self, seed: int) -> BTConfig:
        try:
            return BTConfig(epochs=int(self.epochs), lr=float(self.lr), batch_size=int(self.batch_size),
                            grad_accum=int(self.grad_accum), max_length=self.max_length, finetune=self.finetune,
                            lora_r=int(self.lora_r), lora_alpha=float(self.lora_alpha),
                            lora_dropout=float(self.lora_dropout), weight_decay=float(self.weight_decay),
                            warmup_ratio=float(self.warmup_ratio), evals_per_epoch=int(self.evals_per_epoch),
                            patience=int(self.patience), bf16=self.bf16, seed=seed)
        except (TypeError, ValueError) as e:
            raise MethodError(f"bt-rm: bad setting: {e}") from e

    def examples(self, histories: Sequence[UserHistory], split: str) -> list[BTExample]:
        return [BTExample(tuple(p.context), p.chosen, p.rejected, self.persona_of(h.user_id))
                for h in histories for p in getattr(h, split)]

    def fit(self, histories: Sequence[UserHistory]) -> None:
        env = self._env()
        self._prepare_personas(histories)
        train, val = self.examples(histories, "train"), self.examples(histories, "val")
        if not train:
            raise MethodError("bt-rm: no train pairs in the benchmark; it needs labeled train pairs to fine-tune")
        try:
            self._tok, self._model, report = train_or_load(
                self.model, self.train_config(env.seed), train, val, cache_dir=env.cache_dir, device=self._device,
                reuse=self.reuse_checkpoint, show_progress=env.show_progress, trust_remote_code=self.trust_remote_code)
        except (ValueError, FloatingPointError) as e:
            raise MethodError(f"bt-rm training failed: {e}") from e
        self._usage["training"] = report

    def _ensure_model(self) -> None:
        if self._model is None:
            raise MethodError("bt-rm: predict was called before fit; the harness must call fit first")
