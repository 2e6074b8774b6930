"""Sentence embeddings with an on-disk cache keyed by model identity + text hash.

Vectors live in one SQLite file per (model identity, settings) under
``<cache_dir>/embeddings/``; every computed chunk is committed at once, so an interrupted run
keeps what it finished and a rerun embeds only what is missing.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from personalrewardbench.rewardmodel.models import (
    model_identity,
    quiet_transformers,
    resolve_device,
    resolve_model_path,
)

_CHUNK = 1024
_SQL_VARS = 900


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class EmbeddingCache:
    """``embed(texts) -> float32 [n, dim]`` (L2-normalised), computing only texts not cached yet."""

    def __init__(self, cache_dir: Path | str, model: str | None = None, *, device: str = "cpu", batch_size: int = 64,
                 show_progress: bool = False) -> None:
        self.model_name = model
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.identity = f"{model_identity(model)}|normalized"
        folder = Path(cache_dir) / "embeddings"
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{hashlib.sha256(self.identity.encode()).hexdigest()[:16]}.sqlite"
        self._db = sqlite3.connect(str(self.path))
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT)")
        self._db.execute("CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, vec BLOB NOT NULL)")
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('identity', ?)", (self.identity,))
        self._db.commit()
        self._encoder: Any = None
        self.hits = 0
        self.computed = 0

    def _load_encoder(self) -> Any:
        if self._encoder is None:
            from sentence_transformers import SentenceTransformer

            with quiet_transformers():
                self._encoder = SentenceTransformer(resolve_model_path(self.model_name), device=self.device)
        return self._encoder

    def _lookup(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for s in range(0, len(keys), _SQL_VARS):
            chunk = keys[s:s + _SQL_VARS]
            q = f"SELECT key, vec FROM emb WHERE key IN ({','.join('?' * len(chunk))})"
            for k, blob in self._db.execute(q, chunk):
                found[k] = np.frombuffer(blob, dtype=np.float32)
        return found

    def embed(self, texts: Sequence[str], desc: str = "embedding") -> np.ndarray:
        from tqdm.auto import tqdm

        keys = [text_key(t) for t in texts]
        first: dict[str, str] = {}
        for k, t in zip(keys, texts, strict=True):
            first.setdefault(k, t)
        vecs = self._lookup(list(first))
        todo = [k for k in first if k not in vecs]
        self.hits += len(first) - len(todo)
        if todo:
            enc = self._load_encoder()
            bar = tqdm(total=len(todo), desc=desc, disable=None if self.show_progress else True)
            for s in range(0, len(todo), _CHUNK):
                chunk = todo[s:s + _CHUNK]
                out = enc.encode([first[k] for k in chunk], batch_size=self.batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False).astype(np.float32)
                self._db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?)",
                                     [(k, v.tobytes()) for k, v in zip(chunk, out, strict=True)])
                self._db.commit()
                vecs.update(zip(chunk, out, strict=True))
                self.computed += len(chunk)
                bar.update(len(chunk))
            bar.close()
        if not keys:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([vecs[k] for k in keys])

    def close(self) -> None:
        self._db.close()
