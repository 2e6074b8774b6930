"""End to end on real human preferences: the released summarize-from-feedback batch18 file,
read in place from the shared folder."""

from __future__ import annotations

import json
from collections import Counter, defaultdict

from personalrewardbench.data import build_benchmark, load_benchmark


def _records(summarize_dir):
    path = summarize_dir / "comparisons" / "batch18.json"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_real_file_to_benchmark(summarize_dir, tmp_path):
    recs = _records(summarize_dir)
    bench = load_benchmark(summarize_dir, cache_dir=tmp_path)
    assert bench.name == "summarize_feedback"
    per_worker = Counter(r["worker"] for r in recs)
    assert bench.user_ids() == sorted(per_worker)  # every labeler has >= 16 comparisons
    assert Counter(p.user_id for p in bench.pairs) == per_worker
    src = bench.manifest.sources[0]
    assert src["sha256"] == ["5008e223e287b4c38e434e270cf77301993adba70e1f87362f35fb928f83863a"]
    # choice -> chosen, confidence kept, release split kept as source_split only
    by_key = {(r["worker"], r["info"]["id"], r["summaries"][r["choice"]]["text"],
               r["summaries"][1 - r["choice"]]["text"]): r for r in recs}
    assert len(by_key) == len(recs)
    for p in bench.pairs:
        r = by_key[(p.user_id, p.meta["post_id"], p.chosen, p.rejected)]
        assert p.meta["confidence"] == r["extra"]["confidence"]
        assert p.meta["source_split"] == r["split"]
        assert r["info"]["title"] in p.context[0].content and r["info"]["post"] in p.context[0].content
        assert (p.meta["confidence"] < 5) == (r["choice"] == 0)  # 1-4 means summary 0
    # per-user split: every labeler has all three splits; no post in both train/val and test
    posts = defaultdict(lambda: defaultdict(set))
    for p in bench.pairs:
        posts[p.user_id][p.split].add(p.meta["post_id"])
    for uid, s in posts.items():
        assert s["train"] and s["val"] and s["test"], uid
        assert not (s["test"] & (s["train"] | s["val"])), uid
    c = bench.manifest.counts
    assert c["pairs"] == len(recs) and c["users"] == 11
    assert 0.5 < c["splits"]["test"]["pairs"] / c["pairs"] < 0.7


def test_real_file_split_reproducible_and_seeded(summarize_dir):
    a = build_benchmark("summarize_feedback", input=summarize_dir, use_cache=False)
    b = build_benchmark("summarize_feedback", input=summarize_dir / "comparisons" / "batch18.json", use_cache=False)
    assert a.content_hash == b.content_hash
    from personalrewardbench.data.splits import SplitSettings

    c = build_benchmark("summarize_feedback", input=summarize_dir, use_cache=False, split=SplitSettings(seed=7))
    assert c.content_hash != a.content_hash
