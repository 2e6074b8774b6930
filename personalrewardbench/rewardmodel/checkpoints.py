"""Trained reward-model checkpoints under ``env.cache_dir``, keyed by base model + config + data hash.

A finished checkpoint is a folder ``<cache_dir>/rm-checkpoints/<key>/`` with ``trainable.safetensors``
(only the parameters training changed: LoRA factors + head, or everything for full fine-tuning) and
``meta.json``, written last, so a folder without ``meta.json`` is never mistaken for a finished
run. ``partial.pt`` holds the resumable mid-training state.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHECKPOINT_FORMAT = 1


@dataclass(frozen=True, slots=True)
class BTExample:
    """One training comparison: ``chosen`` beat ``rejected`` after ``context`` (persona optional)."""

    context: tuple[Any, ...]
    chosen: str
    rejected: str
    persona: str | None = None


def examples_hash(train: Sequence[BTExample], val: Sequence[BTExample]) -> str:
    """sha256 over the exact training and validation examples, in order."""
    h = hashlib.sha256()
    for tag, rows in (("train", train), ("val", val)):
        for ex in rows:
            row = {"s": tag, "c": [[m.role, m.content] for m in ex.context], "a": ex.chosen, "b": ex.rejected,
                   "p": ex.persona}
            h.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode())
            h.update(b"\n")
    return h.hexdigest()


def checkpoint_key(base_identity: str, config: Mapping[str, Any], data_hash: str) -> str:
    blob = json.dumps({"format": CHECKPOINT_FORMAT, "base": base_identity, "config": dict(config), "data": data_hash},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class CheckpointStore:
    def __init__(self, cache_dir: Path | str) -> None:
        self.root = Path(cache_dir) / "rm-checkpoints"

    def folder(self, key: str) -> Path:
        return self.root / key

    def partial_path(self, key: str) -> Path:
        return self.folder(key) / "partial.pt"

    def is_done(self, key: str) -> bool:
        return (self.folder(key) / "meta.json").exists() and (self.folder(key) / "trainable.safetensors").exists()

    def load(self, key: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """(trainable state dict, meta) of a finished checkpoint."""
        from safetensors.torch import load_file

        folder = self.folder(key)
        meta = json.loads((folder / "meta.json").read_text())
        return load_file(str(folder / "trainable.safetensors")), meta

    def save(self, key: str, state: Mapping[str, Any], meta: Mapping[str, Any]) -> Path:
        from safetensors.torch import save_file

        folder = self.folder(key)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "trainable.safetensors.tmp"
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
        os.replace(tmp, folder / "trainable.safetensors")
        tmp_meta = folder / "meta.json.tmp"
        tmp_meta.write_text(json.dumps(dict(meta), indent=2, sort_keys=True, default=str))
        os.replace(tmp_meta, folder / "meta.json")
        self.partial_path(key).unlink(missing_ok=True)
        return folder


def load_trainable_into(model: Any, state: Mapping[str, Any]) -> None:
    """Copy saved trainable parameters into ``model``; every saved name must exist there."""
    own = dict(model.named_parameters())
    unknown = [k for k in state if k not in own]
    if unknown:
        raise ValueError(f"checkpoint has {len(unknown)} parameters the model lacks (e.g. {unknown[0]}); "
                         "delete the checkpoint folder and retrain")
    import torch

    with torch.no_grad():
        for k, v in state.items():
            own[k].copy_(v.to(own[k].dtype))
