"""Batched reward scoring: each distinct (context, response, persona) is scored once."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from personalrewardbench.rewardmodel.formatting import RMItem, encode_item, pad_batch


def autocast(device: str, bf16: bool) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA when asked for; a no-op elsewhere (CPU stays fp32)."""
    import torch

    if bf16 and device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def rewards(model: Any, batch: dict[str, Any]) -> Any:
    """One scalar reward per row of a padded batch (a float32 tensor of shape [B])."""
    return model(**batch).logits[:, 0].float()


def sigmoid_diff(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """P(first preferred) = sigmoid(r_first - r_second), computed stably."""
    d = np.asarray(first, dtype=np.float64) - np.asarray(second, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * d))


def length_batches(lengths: Sequence[int], batch_size: int, max_tokens: int | None = None) -> Iterator[list[int]]:
    """Indices grouped into batches of similar length (longest first), to waste little padding."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batch: list[int] = []
    for i in order:
        if batch and (len(batch) >= batch_size or (max_tokens and (len(batch) + 1) * lengths[batch[0]] > max_tokens)):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


class RewardScorer:
    """Scores RMItems with a loaded (tokenizer, model) in batches on ``device``."""

    def __init__(self, tok: Any, model: Any, *, device: str = "cpu", max_length: int = 512,
                 batch_size: int = 32, bf16: bool = True, show_progress: bool = False) -> None:
        self.tok = tok
        self.model = model
        self.device = device
        self.max_length = max_length
        self.batch_size = batch_size
        self.bf16 = bf16
        self.show_progress = show_progress
        self.n_scored = 0

    def score(self, items: Sequence[RMItem], desc: str = "scoring") -> np.ndarray:
        """One reward per item (float64), in input order. Duplicates are scored once."""
        import torch
        from tqdm.auto import tqdm

        index: dict[RMItem, int] = {}
        slots = [index.setdefault(it, len(index)) for it in items]
        distinct = list(index)
        encs = [encode_item(self.tok, it, self.max_length) for it in distinct]
        out = np.zeros(len(distinct), dtype=np.float64)
        self.model.eval()
        show = self.show_progress and len(distinct) >= 2 * self.batch_size
        bar = tqdm(total=len(distinct), desc=desc, disable=None if show else True)  # None: no bar off a terminal
        with torch.inference_mode(), autocast(self.device, self.bf16):
            for batch in length_batches([len(e["input_ids"]) for e in encs], self.batch_size):
                r = rewards(self.model, pad_batch(self.tok, [encs[i] for i in batch], self.device))
                out[batch] = r.cpu().numpy()
                bar.update(len(batch))
        bar.close()
        self.n_scored += len(distinct)
        if not np.all(np.isfinite(out)):
            bad = int(np.sum(~np.isfinite(out)))
            raise FloatingPointError(f"the reward model returned {bad} non-finite scores")
        return out[slots]

    def pair_probabilities(self, firsts: Sequence[RMItem], seconds: Sequence[RMItem]) -> list[float]:
        """P(first preferred) for aligned lists of items, with all items scored in one batched pass."""
        scores = self.score(list(firsts) + list(seconds))
        n = len(firsts)
        return [float(p) if math.isfinite(p) else 0.5 for p in sigmoid_diff(scores[:n], scores[n:])]
