"""Loading from the Hugging Face hub with `datasets`, failing fast without access.

Offline mode (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) uses only the local
`datasets` cache; otherwise the hub is probed with a short timeout first. Either
way a failure ends in one DataError that says how to use local files instead.
"""

from __future__ import annotations

import os
from typing import Any

from personalrewardbench.data.errors import DataError

PROBE_TIMEOUT_S = 3.0
_TRUE = {"1", "true", "yes", "on"}


def hub_offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    try:
        import httpx  # honours HTTPS_PROXY like the hub client does
    except ImportError:  # pragma: no cover - httpx comes with huggingface_hub
        import socket
        from urllib.parse import urlparse

        u = urlparse(endpoint)
        try:
            socket.create_connection((u.hostname or "huggingface.co", u.port or 443), timeout=timeout).close()
        except OSError:
            return False
        return True
    try:
        httpx.head(f"{endpoint}/api/datasets", timeout=timeout, follow_redirects=True)
    except httpx.HTTPError:
        return False
    return True


def no_hub_message(repo: str, revision: str | None, reason: str, local_hint: str) -> str:
    rev = f" at revision {revision}" if revision else ""
    return (f"cannot load {repo}{rev} from the Hugging Face hub ({reason}). Use local files instead: {local_hint}")


def load_hub_dataset(repo: str, *, revision: str | None, config: str | None = None, split: str | None = None,
                     local_hint: str) -> Any:
    """``datasets.load_dataset(repo, config, revision=..., split=...)`` or one DataError."""
    offline = hub_offline()
    if not offline and not hub_reachable():
        raise DataError(no_hub_message(repo, revision, f"the hub did not answer within {PROBE_TIMEOUT_S:.0f} s",
                                       local_hint))
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets is a core dependency
        raise DataError("the `datasets` package is missing; `pip install -e .[hf]`, or use local files: "
                        + local_hint) from exc
    try:
        return datasets.load_dataset(repo, config, revision=revision, split=split)
    except Exception as exc:  # datasets/hub raise many types (ConnectionError, FileNotFoundError, HfHubHTTPError, ...)
        reason = "offline mode and not in the local datasets cache" if offline else f"{type(exc).__name__}: {exc}"
        raise DataError(no_hub_message(repo, revision, reason.splitlines()[0][:300], local_hint)) from exc
