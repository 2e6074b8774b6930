"""Per-labeler comparisons from "Learning to summarize from human feedback"
(Stiennon et al., 2020; hub ``openai/summarize_from_feedback``, config ``comparisons``).

Record schema (one JSON object a line, batch files ``comparisons/batchN.json``):
``info`` {id, post, title, subreddit} (CNN/DM batches: article, site),
``summaries`` [{text, policy, note}, {...}], ``choice`` (0/1, index of the
preferred summary), ``worker`` (labeler id -> user), ``batch``, ``split``
(valid1/valid2/train: the release's split, *not* a per-user split, kept in meta
as ``source_split``), ``extra`` {confidence: 1-9, 5 +- the labeler's confidence}.
The split unit is the post: one labeler's pairs on one post stay together.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from personalrewardbench.data.common import iter_records, record_files, stable_hash, user_id_from
from personalrewardbench.data.errors import DataError
from personalrewardbench.data.hub import load_hub_dataset
from personalrewardbench.data.records import iter_hub_rows
from personalrewardbench.data.schema import Message, PreferencePair
from personalrewardbench.data.text import Findings, normalize_text

SUMMARIZE_REPO = "openai/summarize_from_feedback"
SUMMARIZE_REVISION = "main"  # commit sha not resolvable from this workplace; the local files carry sha256s
NAME = "summarize_feedback"
LOCAL_HINT = ("pass the comparisons files: `--input DIR` where DIR holds comparisons/batch*.json "
              "(as released by OpenAI) or the .json files themselves.")


def render_prompt(info: Mapping[str, Any]) -> str:
    """The post (or article) as the user's request for a summary."""
    body = info.get("post") or info.get("article") or ""
    where = f" from r/{info['subreddit']}" if info.get("subreddit") else ""
    title = f"Title: {info['title']}\n\n" if info.get("title") else ""
    return f"Write a short TL;DR summary of this post{where}.\n\n{title}{body}"


def pair_from_comparison(rec: Mapping[str, Any], where: str, counts: Counter[str]) -> tuple[PreferencePair, str] | None:
    for field in ("info", "summaries", "choice", "worker"):
        if rec.get(field) is None or rec.get(field) == "":
            raise DataError(f"{NAME}: {where}: missing field {field!r}. Each comparison needs info, summaries, "
                            "choice and worker; fix or drop the line.")
    info, summaries, choice = rec["info"], rec["summaries"], rec["choice"]
    if not isinstance(info, Mapping) or not info.get("id"):
        raise DataError(f"{NAME}: {where}: field 'info' must be an object with an 'id'. Fix the line.")
    if not (info.get("post") or info.get("article")):
        raise DataError(f"{NAME}: {where}: field 'info' has neither 'post' nor 'article'. Fix the line.")
    for key in ("post", "article", "title", "subreddit"):
        if info.get(key) is not None and not isinstance(info[key], str):
            raise DataError(f"{NAME}: {where}: field 'info.{key}' must be a string, got {type(info[key]).__name__}. "
                            "Fix the line.")
    if not isinstance(summaries, list) or len(summaries) != 2 or not all(
            isinstance(s, Mapping) and isinstance(s.get("text"), str) for s in summaries):
        raise DataError(f"{NAME}: {where}: field 'summaries' must be two objects with a 'text' string.")
    if isinstance(choice, bool) or not isinstance(choice, int) or choice not in (0, 1):
        raise DataError(f"{NAME}: {where}: field 'choice' is {choice!r}; expected the integer 0 or 1.")
    chosen, rejected = summaries[choice]["text"], summaries[1 - choice]["text"]
    if not normalize_text(chosen) or not normalize_text(rejected):
        counts["empty_response_dropped"] += 1
        return None
    if normalize_text(chosen) == normalize_text(rejected):
        counts["identical_responses_dropped"] += 1
        return None
    worker, post_id = user_id_from(rec["worker"], dataset=NAME, where=where, field="worker"), str(info["id"])
    extra = rec.get("extra") if isinstance(rec.get("extra"), Mapping) else {}
    meta = {"post_id": post_id, "subreddit": info.get("subreddit"), "choice": choice,
            "confidence": extra.get("confidence"), "chosen_policy": summaries[choice].get("policy"),
            "rejected_policy": summaries[1 - choice].get("policy"), "batch": rec.get("batch"),
            "source_split": rec.get("split")}
    pid = f"tldr:{worker}:{post_id}:{stable_hash(*sorted((chosen, rejected)), n=10)}"
    pair = PreferencePair(pair_id=pid, user_id=worker, dataset=NAME, context=(Message("user", render_prompt(info)),),
                          chosen=chosen, rejected=rejected, split="train", meta=meta)
    return pair, post_id


def comparison_records(input_path: Path | None, findings: Findings
                       ) -> tuple[Iterable[tuple[str, Mapping[str, Any]]], dict[str, Any]]:
    """(location, record) for every comparison (text repaired and counted in ``findings``), and the source."""
    if input_path is None:
        return _hub_records(findings), {"id": SUMMARIZE_REPO, "config": "comparisons", "revision": SUMMARIZE_REVISION,
                                "kind": "hub", "path": None}
    p = input_path / "comparisons" if (input_path / "comparisons").is_dir() else input_path
    files = [f for f in record_files(p) if f.suffix in (".json", ".jsonl", ".parquet")]
    if not files:
        raise DataError(f"{NAME}: no comparison files under {input_path}. {LOCAL_HINT}")

    def gen() -> Iterable[tuple[str, Mapping[str, Any]]]:
        for f in files:
            yield from iter_records(f, dataset=NAME, findings=findings)

    return gen(), {"id": SUMMARIZE_REPO, "config": "comparisons", "kind": "local", "path": [str(f) for f in files]}


def _hub_records(findings: Findings) -> Iterable[tuple[str, Mapping[str, Any]]]:
    dsd = load_hub_dataset(SUMMARIZE_REPO, config="comparisons", revision=SUMMARIZE_REVISION, local_hint=LOCAL_HINT)
    for split in dsd:
        yield from iter_hub_rows(dsd[split], f"{SUMMARIZE_REPO} {split}", findings, dataset=NAME)
