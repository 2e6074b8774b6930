"""Reward-model building blocks shared by the RM baselines (vanilla-rm, bt-rm, embed-logreg).

- models: the embedded MiniLM / any HF sequence-classification model, identity, device
- formatting: (context, response, persona) -> token ids (chat template or text pair), truncation
- scoring: batched scoring of distinct items, P(first) = sigmoid(score difference)
- lora, trainer, checkpoints, finetune: Bradley-Terry training, LoRA, cached/resumable checkpoints
- personas: SynthesizeMe personas from a results folder or by running the method
- embeddings, hierlogreg: cached sentence embeddings and the global + per-user logistic regression
"""

from personalrewardbench.rewardmodel.checkpoints import BTExample
from personalrewardbench.rewardmodel.finetune import train_or_load
from personalrewardbench.rewardmodel.formatting import RMItem
from personalrewardbench.rewardmodel.models import embedded_minilm_path, load_reward_model, model_identity
from personalrewardbench.rewardmodel.scoring import RewardScorer, sigmoid_diff
from personalrewardbench.rewardmodel.trainer import BTConfig

__all__ = ["BTConfig", "BTExample", "RMItem", "RewardScorer", "embedded_minilm_path", "load_reward_model",
           "model_identity", "sigmoid_diff", "train_or_load"]
