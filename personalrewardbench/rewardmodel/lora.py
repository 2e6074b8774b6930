"""A minimal LoRA (Hu et al., 2021): frozen base linear layers plus trainable low-rank updates.

``W x + (alpha / r) * B A x`` with A (r x in) Kaiming-initialised and B (out x r) zero, so training
starts from the base model. The classification head stays fully trainable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

DEFAULT_TARGETS = ("query", "value", "q_proj", "v_proj", "c_attn", "qkv_proj", "Wqkv")
HEAD_NAMES = ("classifier", "score", "lm_head", "pooler")


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float) -> None:
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        dev = base.weight.device
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, device=dev, dtype=torch.float32))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, device=dev, dtype=torch.float32))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scaling = alpha / r
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        update = (self.dropout(x).to(self.lora_A.dtype) @ self.lora_A.T) @ self.lora_B.T
        return out + (update * self.scaling).to(out.dtype)

    def merged(self) -> nn.Linear:
        """The base layer with the update folded into its weight."""
        with torch.no_grad():
            delta = (self.lora_B @ self.lora_A) * self.scaling
            self.base.weight += delta.to(self.base.weight.dtype)
        return self.base


def _set_child(model: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def apply_lora(model: nn.Module, r: int = 8, alpha: float = 16.0, dropout: float = 0.0,
               targets: Sequence[str] = DEFAULT_TARGETS) -> list[str]:
    """Freeze ``model``, wrap every linear whose name ends in one of ``targets``, unfreeze the head.

    Returns the wrapped module names. Raises ValueError when nothing matched.
    """
    for p in model.parameters():
        p.requires_grad_(False)
    names = [n for n, m in model.named_modules()
             if isinstance(m, nn.Linear) and n.rsplit(".", 1)[-1] in set(targets)]
    if not names:
        raise ValueError(f"no linear layer named one of {list(targets)} in {type(model).__name__}; set lora_targets")
    for n in names:
        _set_child(model, n, LoRALinear(model.get_submodule(n), r, alpha, dropout))
    unfreeze_head(model)
    return names


def unfreeze_head(model: nn.Module) -> None:
    """Make the classification head (and BERT pooler) trainable, in fp32."""
    for n, m in model.named_modules():
        if n.split(".")[-1] in HEAD_NAMES and n.count(".") <= 1:
            m.float()
            for p in m.parameters():
                p.requires_grad_(True)


def merge_lora(model: nn.Module) -> int:
    """Fold every LoRALinear back into a plain linear (faster scoring). Returns how many were merged."""
    names = [n for n, m in model.named_modules() if isinstance(m, LoRALinear)]
    for n in names:
        _set_child(model, n, model.get_submodule(n).merged())
    return len(names)


def trainable_state(model: nn.Module) -> dict[str, Any]:
    """The trainable parameters only (what a checkpoint needs on top of the base model)."""
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}
