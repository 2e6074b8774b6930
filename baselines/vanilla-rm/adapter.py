"""vanilla-rm: an off-the-shelf sequence-classification reward model, no personalization."""

from __future__ import annotations

from typing import Any

from personalrewardbench.rewardmodel.models import load_reward_model
from personalrewardbench.rewardmodel.rm_method import RewardModelMethod


class VanillaRM(RewardModelMethod):
    """P(first preferred) = sigmoid(r(context, first) - r(context, second)); users are ignored.

    ``model``: any HF AutoModelForSequenceClassification id or local folder with one output
    logit. ``None`` = the embedded MiniLM with an UNTRAINED, seed-initialised head: an offline
    plumbing check, not a reward model (expect chance-level accuracy).
    """

    name = "vanilla-rm"
    capabilities = frozenset()  # scores with a fixed model: no training, no personalization

    def __init__(self, model: str | None = None, max_length: int = 512, score_batch_size: int = 32,
                 bf16: bool = True, trust_remote_code: bool = False,
                 device: str | None = None) -> None:
        self._init_common(model=model, max_length=max_length, score_batch_size=score_batch_size, bf16=bf16,
                          trust_remote_code=trust_remote_code, device=device)

    def _ensure_model(self) -> None:
        if self._model is None:
            env = self._env()
            self._tok, self._model = load_reward_model(self.model, device=self._device, bf16=self.bf16, seed=env.seed,
                                                       trust_remote_code=self.trust_remote_code)

    def usage(self) -> dict[str, Any]:
        return {**super().usage(), "untrained_head": self.model is None}
