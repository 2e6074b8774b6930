"""Benchmark: build a benchmark from PRISM-sized raw input, cold and with a warm cache.

Generates raw input in the real PRISM schema (conversations.jsonl + survey.jsonl:
about 1,500 users, 8,000 conversations, 68,000 scored model responses by default),
then runs `prb data build --source prism_raw` twice in child processes (cold
cache, then warm cache: a no-op since inputs + settings match the folder's build),
and times `build_benchmark` served from the on-disk cache (the path
`load_benchmark` and `prb evaluate` take) in a fresh child. Prints wall time
and peak RSS of each. Targets (2-core machine): cold < 30 s and < 2 GB peak RSS;
warm < 2 s.

    python scripts/bench/bench_data_build.py [--users 1500 --conversations 8000] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = ("the a model answer user people time way think good work could would make well also because first "
         "example important value health money family food travel music history science policy country city "
         "school language question reason idea problem change world community support help learn choose "
         "consider option risk benefit cost evidence opinion culture respect safety freedom fair").split()
MODELS = ("gpt-4", "claude-2", "llama-2-70b-chat", "mistral-7b-instruct", "zephyr-7b-beta", "command-light",
          "falcon-7b-instruct", "palm-2", "gpt-3.5-turbo", "flan-t5-xxl", "pythia-12b", "luminous-extended")
TYPES = ("unguided", "values guided", "controversy guided")


def _text(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n_words)).capitalize() + "."


def generate(out: Path, n_users: int, n_conversations: int, seed: int = 0) -> dict[str, int]:
    """Write conversations.jsonl and survey.jsonl in the PRISM schema; return counts."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    n_responses = 0
    with open(out / "conversations.jsonl", "w") as f:
        for c in range(n_conversations):
            uid = f"user{rng.randrange(n_users)}"
            n_turns = rng.choice((1, 2, 3, 3, 3, 4, 4, 6))  # mean 3.25 -> ~8.5 responses
            hist = []
            for t in range(n_turns):
                hist.append({"turn": t, "role": "user", "content": _text(rng, rng.randint(8, 40)),
                             "model_provider": None, "model_name": None, "score": None, "if_chosen": None,
                             "within_turn_id": None})
                k = 4 if t == 0 else 2
                scores = [rng.randint(1, 100) for _ in range(k)]
                best = max(range(k), key=lambda i: scores[i])
                for w in range(k):
                    model = rng.choice(MODELS)
                    hist.append({"turn": t, "role": "model", "content": _text(rng, rng.randint(40, 180)),
                                 "model_provider": model.split("-")[0], "model_name": model, "score": scores[w],
                                 "if_chosen": w == best, "within_turn_id": w})
                n_responses += k
            rec = {"conversation_id": f"c{c}", "user_id": uid, "generated_datetime": "2023-11-22 15:49:52",
                   "timing_duration_s": 300.0, "timing_duration_mins": 5.0, "conversation_type": rng.choice(TYPES),
                   "opening_prompt": hist[0]["content"], "conversation_turns": n_turns, "conversation_history": hist,
                   "performance_attributes": {"values": 50, "fluency": 60, "factuality": 70, "safety": 80,
                                              "diversity": 40, "creativity": 30, "helpfulness": 90},
                   "choice_attributes": {"values": 50, "fluency": 60, "factuality": 70, "safety": 80,
                                         "diversity": 40, "creativity": 30, "helpfulness": 90},
                   "open_feedback": _text(rng, 20), "included_in_balanced_subset": rng.random() < 0.5}
            f.write(json.dumps(rec) + "\n")
    with open(out / "survey.jsonl", "w") as f:
        for u in range(n_users):
            f.write(json.dumps({"user_id": f"user{u}", "age": rng.choice(("18-24 years old", "25-34 years old")),
                                "gender": rng.choice(("Male", "Female", "Non-binary / third gender")),
                                "education": "University Bachelors Degree", "lm_familiarity": "Very familiar",
                                "self_description": _text(rng, 30), "system_string": _text(rng, 20),
                                "location": {"birth_country": "United Kingdom", "reside_country": "United Kingdom"},
                                "stated_prefs": {"values": 80, "fluency": 90}}) + "\n")
    return {"users": n_users, "conversations": n_conversations, "responses": n_responses}


def run_build(input_dir: Path, out: Path, cache: Path) -> tuple[float, float, str]:
    """Run `prb data build` in a child; return (wall seconds, peak RSS MiB of the child, its stdout)."""
    cmd = [sys.executable, "-c", "import sys; from personalrewardbench.cli import main; sys.exit(main(sys.argv[1:]))",
           "data", "build", "--source", "prism_raw", "--input", str(input_dir), "--out", str(out),
           "--cache-dir", str(cache)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode:
        sys.exit(f"build failed:\n{proc.stderr}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024, proc.stdout


CACHED_LOAD = """
import sys, time
t0 = time.perf_counter()
from personalrewardbench.data.build import build_benchmark
t1 = time.perf_counter()
b = build_benchmark("prism_raw", input=sys.argv[1], cache_dir=sys.argv[2])
t2 = time.perf_counter()
print(f"{t1 - t0:.3f} {t2 - t1:.3f} {len(b.pairs)}")
"""


def run_cached_load(input_dir: Path, cache: Path) -> tuple[float, float, float, int]:
    """(child wall s, import s, cache-hit build s, pairs) of build_benchmark from a warm cache in a fresh child."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CACHED_LOAD, str(input_dir), str(cache)], capture_output=True,
                          text=True, check=True)
    wall = time.perf_counter() - t
    imp, build, n = proc.stdout.split()
    return wall, float(imp), float(build), int(n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=1500)
    ap.add_argument("--conversations", type=int, default=8000)
    ap.add_argument("--workdir", type=Path, default=None, help="keep files here (default: a temp folder)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        t = time.perf_counter()
        counts = generate(work / "raw", args.users, args.conversations)
        size = sum(f.stat().st_size for f in (work / "raw").iterdir()) / 2**20
        print(f"generated {counts} ({size:.0f} MiB) in {time.perf_counter() - t:.1f} s")
        cold, cold_rss, out = run_build(work / "raw", work / "built", work / "cache")
        print(out.strip())
        warm, warm_rss, out2 = run_build(work / "raw", work / "built", work / "cache")
        print(out2.splitlines()[0])
        print(f"cold build: {cold:.2f} s wall, peak RSS {cold_rss:.0f} MiB (targets < 30 s, < 2048 MiB)")
        print(f"warm-cache rebuild (prb data build, same --out): {warm:.2f} s wall (target < 2 s)")
        wall, imp, hit, n = run_cached_load(work / "raw", work / "cache")
        print(f"cache-hit build_benchmark in a fresh process: {hit:.2f} s ({n} pairs; imports {imp:.2f} s, "
              f"process wall {wall:.2f} s)")


if __name__ == "__main__":
    main()
