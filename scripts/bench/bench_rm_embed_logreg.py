"""embed-logreg on a PRISM-sized synthetic benchmark (700 users, 17,000 pairs): cold and warm.

    python scripts/bench/bench_rm_embed_logreg.py [--users 700 --pairs 17000] [--cache-dir DIR]

Cold = an empty embedding cache (every context and response is embedded with MiniLM);
warm = a fresh method instance on the same cache (embeddings read from disk). Each prints
fit and predict seconds (test pairs in both orders) and the accuracy. Users have hidden
tastes (length, formality, topic words), so there is something to learn per user.
"""

from __future__ import annotations

import argparse
import math
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from personalrewardbench.data.schema import Benchmark, Manifest, Message, PreferencePair, content_hash
from personalrewardbench.evaluate import make_queries
from personalrewardbench.methods import MethodEnv, load_method

TOPICS = ("travel cooking finance health music programming history gardening parenting fitness climate "
          "politics movies education careers pets astronomy fashion sleep relationships").split()
FILLER = ("this is a helpful answer that covers the main points and some background with a few practical "
          "suggestions you can try today while keeping in mind what matters most to you").split()
FORMAL = ("furthermore consequently it is advisable to consider the relevant factors in accordance with "
          "established guidance").split()
CASUAL = "honestly just go for it lol it's totally fine no worries you got this haha".split()


def synthetic_prism(n_users: int, n_pairs: int, seed: int = 0) -> Benchmark:
    rng = random.Random(seed)
    per_user = [1.0 + rng.random() for _ in range(n_users)]
    counts = [max(6, round(n_pairs * w / sum(per_user))) for w in per_user]
    counts[-1] += n_pairs - sum(counts)
    pairs, profiles = [], {}
    for u, n in enumerate(counts):
        uid = f"user{u:04d}"
        profiles[uid] = None
        taste = np.array([rng.gauss(0, 1) for _ in range(3)])  # length, formality, topic affinity
        fav = rng.choice(TOPICS)
        k = 0
        while k < n:
            topic = rng.choice(TOPICS)
            ctx = (Message("user", f"Can you help me with a question about {topic}? "
                                   + " ".join(rng.choices(FILLER, k=rng.randint(5, 25)))),)
            responses = []
            for _ in range(4):  # PRISM: several model responses per turn, rated by the user
                style = rng.random()
                words = rng.choices(FORMAL if style > 0.5 else CASUAL, k=rng.randint(3, 12))
                body = rng.choices(FILLER, k=rng.randint(20, 120)) + rng.choices([topic, fav], k=3) + words
                rng.shuffle(body)
                text = " ".join(body)
                feats = np.array([math.log(len(body)), style - 0.5, float(fav in body)])
                responses.append((text, float(taste @ feats) + rng.gauss(0, 0.5)))
            for i in range(4):
                for j in range(i + 1, 4):
                    if k >= n:
                        break
                    a, b = responses[i], responses[j]
                    chosen, rejected = (a[0], b[0]) if a[1] >= b[1] else (b[0], a[0])
                    r = k / n
                    split = "train" if r < 0.6 else "val" if r < 0.8 else "test"
                    pairs.append(PreferencePair(f"{uid}-{k:04d}", uid, "synthetic-prism", ctx, chosen, rejected, split))
                    k += 1
    manifest = Manifest(name="synthetic-prism", sources=({"id": "bench", "kind": "synthetic"},), filters={}, seed=seed,
                        counts={"users": n_users, "pairs": len(pairs)}, content_hash=content_hash(pairs, profiles),
                        synthetic=True)
    return Benchmark(tuple(pairs), profiles, manifest)


def run_once(label: str, name: str, bench: Benchmark, cache: Path) -> None:
    method = load_method(name)
    method.setup(MethodEnv(cache_dir=cache, show_progress=False))
    t0 = time.perf_counter()
    method.fit(bench.histories())
    t1 = time.perf_counter()
    queries, keys = make_queries(bench.pairs_of("test"), seed=0)
    preds = method.predict(queries)
    t2 = time.perf_counter()
    acc = np.mean([(p > 0.5) == (keys[q.query_id].order == "chosen_first") for q, p in zip(queries, preds, strict=True)])
    u = method.usage()
    print(f"{label:6s} {name:20s} fit {t1 - t0:8.1f}s  predict {t2 - t1:7.1f}s  total {t2 - t0:8.1f}s  "
          f"queries {len(queries)}  accuracy {acc:.3f}  embedded {u.get('embeddings_computed')}  "
          f"cache hits {u.get('embedding_hits')}  lam {u.get('chosen_lam')}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=700)
    ap.add_argument("--pairs", type=int, default=17000)
    ap.add_argument("--cache-dir", default=None, help="embedding cache (default: a fresh temporary folder = cold)")
    ap.add_argument("--skip-cold", action="store_true", help="only the warm run (cache already filled)")
    args = ap.parse_args()
    t = time.perf_counter()
    bench = synthetic_prism(args.users, args.pairs)
    texts = {p.chosen for p in bench.pairs} | {p.rejected for p in bench.pairs} | {p.context[0].content for p in bench.pairs}
    print(f"benchmark: {len(bench.user_ids())} users, {len(bench.pairs)} pairs "
          f"({len(bench.pairs_of('test'))} test), {len(texts)} distinct texts; built in {time.perf_counter() - t:.1f}s")
    cache = Path(args.cache_dir) if args.cache_dir else Path(tempfile.mkdtemp(prefix="prb-bench-embed-"))
    print(f"cache: {cache}")
    if not args.skip_cold:
        run_once("cold", "embed-logreg", bench, cache)
    run_once("warm", "embed-logreg", bench, cache)
    run_once("warm", "embed-logreg-global", bench, cache)


if __name__ == "__main__":
    main()
