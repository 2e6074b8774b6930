"""embed-logreg: MiniLM sentence embeddings + a global logistic regression + per-user offsets."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from personalrewardbench.data.schema import Context, Query, UserHistory
from personalrewardbench.methods import Method, MethodEnv, MethodError
from personalrewardbench.rewardmodel.embeddings import EmbeddingCache
from personalrewardbench.rewardmodel.formatting import render_plain
from personalrewardbench.rewardmodel.hierlogreg import HierarchicalLogReg
from personalrewardbench.rewardmodel.models import describe_model


class EmbedLogReg(Method):
    """Features of (context c, first a, second b), all antisymmetric in (a, b):
    e(a) - e(b); e(c) * (e(a) - e(b)) (if ``use_context``); log(1 + words(a)) - log(1 + words(b))
    (if ``use_length``). e() = L2-normalised sentence embedding. Model: see
    personalrewardbench/rewardmodel/hierlogreg.py (global LR + per-user offsets shrunk towards it).
    """

    name = "embed-logreg"
    capabilities = frozenset({"personalized"})

    def __init__(self, embedding_model: str | None = None, use_context: bool = True, use_length: bool = True,
                 personalize: bool = True, C_grid: Sequence[float] = (0.1, 1.0, 10.0),
                 lam_grid: Sequence[float] = (1.0, 4.0, 16.0, 64.0), context_chars: int = 2000,
                 embed_batch_size: int = 64) -> None:
        if not C_grid or not lam_grid or any(float(c) <= 0 for c in [*C_grid, *lam_grid]):
            raise MethodError("embed-logreg: C_grid and lam_grid must be non-empty lists of positive numbers")
        self.embedding_model, self.use_context, self.use_length = embedding_model, use_context, use_length
        self.personalize, self.context_chars, self.embed_batch_size = personalize, int(context_chars), embed_batch_size
        self.C_grid, self.lam_grid = [float(c) for c in C_grid], [float(x) for x in lam_grid]
        self._cache: EmbeddingCache | None = None
        self._model: HierarchicalLogReg | None = None
        self._usage: dict[str, Any] = {}

    @property
    def base_model(self) -> str:
        return describe_model(self.embedding_model)

    def setup(self, env: MethodEnv) -> None:
        super().setup(env)
        self._cache = EmbeddingCache(env.cache_dir, self.embedding_model, device="cpu",
                                     batch_size=self.embed_batch_size, show_progress=env.show_progress)

    def _embedder(self) -> EmbeddingCache:
        if self._cache is None:
            self.setup(MethodEnv())
        assert self._cache is not None
        return self._cache

    def _context_text(self, context: Context) -> str:
        text = render_plain(context)
        return text[-self.context_chars:] if len(text) > self.context_chars else text

    def features(self, rows: Sequence[tuple[Context, str, str]]) -> np.ndarray:
        """One feature row per (context, a, b)."""
        emb = self._embedder()
        ea = emb.embed([a for _, a, _ in rows], desc="embedding responses")
        eb = emb.embed([b for _, _, b in rows], desc="embedding responses")
        diff = ea - eb
        parts = [diff]
        if self.use_context:
            parts.append(emb.embed([self._context_text(c) for c, _, _ in rows], desc="embedding contexts") * diff)
        if self.use_length:
            la = np.log1p([len(a.split()) for _, a, _ in rows])
            lb = np.log1p([len(b.split()) for _, _, b in rows])
            parts.append((la - lb)[:, None])
        return np.hstack(parts).astype(np.float64)

    def fit(self, histories: Sequence[UserHistory]) -> None:
        t0 = time.perf_counter()
        rows = {s: [(tuple(p.context), p.chosen, p.rejected) for h in histories for p in getattr(h, s)]
                for s in ("train", "val")}
        users = {s: [h.user_id for h in histories for _ in getattr(h, s)] for s in ("train", "val")}
        if not rows["train"]:
            raise MethodError("embed-logreg: no train pairs in the benchmark; it needs labeled train pairs")
        X_train = self.features(rows["train"])
        X_val = self.features(rows["val"]) if rows["val"] else None
        t1 = time.perf_counter()
        self._model = HierarchicalLogReg(self.C_grid, self.lam_grid, personalize=self.personalize)
        self._model.fit(X_train, users["train"], X_val, users["val"],
                        progress=getattr(getattr(self, "env", None), "show_progress", False))
        emb = self._embedder()
        self._usage.update({
            "seconds_embed_fit": t1 - t0, "seconds_model_fit": time.perf_counter() - t1,
            "chosen_C": self._model.C, "chosen_lam": None if math.isinf(self._model.lam) else self._model.lam,
            "selection_val_logloss": self._model.selection, "n_users_with_offset": len(self._model.offsets),
            "n_features": int(X_train.shape[1]), "embedding_cache": str(emb.path),
        })

    def predict(self, queries: Sequence[Query]) -> list[float | None]:
        if self._model is None:
            raise MethodError("embed-logreg: predict was called before fit; the harness must call fit first")
        if not queries:
            return []
        X = self.features([(tuple(q.context), q.first, q.second) for q in queries])
        z = self._model.logits(X, [q.user_id for q in queries])
        return [float(v) for v in 0.5 * (1.0 + np.tanh(0.5 * z))]

    def usage(self) -> Mapping[str, Any]:
        emb = self._cache
        cache = {"embedding_hits": emb.hits, "embeddings_computed": emb.computed} if emb else {}
        return {"embedding_model": self.base_model, **self._usage, **cache}
