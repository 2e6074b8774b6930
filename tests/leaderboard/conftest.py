"""Hand-written results folders in the exact results schema (brief: results.json v1)."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

HOSTILE_NAME = '<script>alert("x")</script>"><img src=x onerror=alert(1)>'


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_results(root: Path, dataset: str, method: str, *, skill: float, tier: str = "reproduced",
                  base_model: str | None = None, n_users: int = 8, n_test: int = 5, status: str = "ok",
                  tokens_per_1000: float = 0.0, seconds_per_1000: float = 1.0, synthetic: bool = False,
                  artifacts: dict[str, str] | None = None, source: str | None = None, seed: int = 0,
                  run_id: str = "20260101T000000Z-abc123", config: dict[str, Any] | None = None) -> Path:
    """Write one results folder whose numbers follow from its predictions (per-user and pooled)."""
    folder = root / dataset / method / run_id if "/" not in method and ".." not in method else \
        root / dataset / hashlib.sha256(method.encode()).hexdigest()[:10] / run_id
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"{seed}-{dataset}-{method}")
    preds, per_user, correct_all = [], {}, []
    for u in range(n_users):
        uid = f"user{u:02d}"
        n_train = 3 + 2 * u
        correct = []
        for k in range(n_test):
            for order in ("chosen_first", "chosen_second"):
                ok = rng.random() < skill
                p = (0.8 if ok else 0.2) if order == "chosen_first" else (0.2 if ok else 0.8)
                preds.append({"query_id": f"q-{uid}-{k}-{order}", "pair_id": f"{uid}-p{k}", "user_id": uid,
                              "order": order, "p": p})
                correct.append(ok)
        correct_all += correct
        per_user[uid] = {"accuracy": sum(correct) / len(correct), "n_pairs": n_test, "n_train": n_train, "n_val": 2,
                         "n_ties": 0, "n_failed": 0}
    acc = sum(correct_all) / len(correct_all)
    half = 1.96 * (acc * (1 - acc) / len(correct_all)) ** 0.5 + 0.01
    user_mean = sum(u["accuracy"] for u in per_user.values()) / n_users
    n_j = len(preds)
    data: dict[str, Any] = {
        "schema_version": 1, "run_id": run_id, "status": status,
        "not_applicable_reason": "needs user profiles (demographics); this dataset has none" if status != "ok" else None,
        "method": {"name": method, "config": config or {"variant": "direct"}, "capabilities": ["llm"],
                   "source": source or f"baselines/{method}", "tier": tier, "base_model": base_model},
        "dataset": {"name": dataset, "content_hash": "0" * 64, "synthetic": synthetic, "manifest": {"name": dataset},
                    "n_users": n_users, "n_test_pairs": n_users * n_test, "selected_users": None, "shard": None},
        "scores": None, "per_user": {}, "cost": {}, "method_usage": {},
        "provenance": {"package_version": "0.1.0", "git_commit": "deadbeef", "command": "prb evaluate",
                       "python": "3.11", "platform": "linux", "libraries": {"numpy": "2"},
                       "llm_identity": f"transformers:{base_model}" if base_model else None,
                       "prompt_template_hashes": {}, "seed": seed, "started_at": "2026-01-01T00:00:00Z",
                       "finished_at": "2026-01-02T00:00:00Z"},
        "files": {},
    }
    if status == "ok":
        data["scores"] = {
            "accuracy": acc, "accuracy_ci95": [max(0.0, acc - half), min(1.0, acc + half)],
            "accuracy_ci95_users": [max(0.0, acc - half - 0.02), min(1.0, acc + half + 0.02)],
            "user_mean_accuracy": user_mean,
            "user_mean_accuracy_ci95": [max(0.0, user_mean - half), min(1.0, user_mean + half)],
            "position_consistency": 0.9, "n_judgments": n_j, "n_pairs": n_users * n_test, "n_users": n_users,
            "n_ties": 0, "n_failed": 0, "bootstrap": {"resamples": 1000, "seed": 0},
        }
        data["per_user"] = per_user
        data["cost"] = {"llm_calls": n_j if tokens_per_1000 else 0, "prompt_tokens": int(tokens_per_1000 * n_j / 1000),
                        "completion_tokens": 0, "cache_hits": 0, "seconds_fit": 0.1, "seconds_predict": 0.2,
                        "seconds_total": 0.3, "tokens_per_1000_judgments": tokens_per_1000,
                        "seconds_per_1000_judgments": seconds_per_1000}
        with (folder / "predictions.jsonl").open("w") as f:
            for p in preds:
                f.write(json.dumps(p, sort_keys=True) + "\n")
        data["files"]["predictions.jsonl"] = _sha(folder / "predictions.jsonl")
    if artifacts is not None:
        (folder / "artifacts.json").write_text(json.dumps(artifacts, sort_keys=True))
        data["files"]["artifacts.json"] = _sha(folder / "artifacts.json")
    (folder / "results.json").write_text(json.dumps(data, indent=2, sort_keys=True))
    return folder


def write_standard_results(root: Path) -> Path:
    """A small leaderboard: two datasets, five methods, one not-applicable row, personas."""
    results = root / "results"
    for ds, synth in (("chatbot_arena", False), ("synthetic-sample", True)):
        write_results(results, ds, "random", skill=0.5, synthetic=synth, seconds_per_1000=0.05)
        write_results(results, ds, "length", skill=0.55, synthetic=synth, seconds_per_1000=0.1)
        write_results(results, ds, "default-judge", skill=0.62, base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
                      tokens_per_1000=250_000, seconds_per_1000=300, synthetic=synth)
        write_results(results, ds, "synthesizeme", skill=0.75, base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
                      tokens_per_1000=900_000, seconds_per_1000=1200, synthetic=synth,
                      artifacts={f"user{u:02d}": f"Prefers short answers & <b>bold</b> claims (user {u})"
                                 for u in range(8)})
        write_results(results, ds, "demographics", skill=0.5, status="not_applicable", synthetic=synth)
    return results


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    return write_standard_results(tmp_path)


@pytest.fixture(scope="module")
def standard_site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(results root, built site) of the standard results, built once per module; read-only."""
    from personalrewardbench.leaderboard.build import build_site

    root = tmp_path_factory.mktemp("standard")
    results = write_standard_results(root)
    build_site([results], root / "site", include_reported=False)
    return results, root / "site"


@pytest.fixture(scope="module")
def hostile_site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The standard results plus one run whose every field is hostile; built once per module."""
    from personalrewardbench.leaderboard.build import build_site

    root = tmp_path_factory.mktemp("hostile")
    results = write_standard_results(root)
    write_results(results, "chatbot_arena", HOSTILE_NAME, skill=0.9, base_model="=cmd|' /C calc'!A0 $x$",
                  source="javascript:alert(2)", artifacts={HOSTILE_NAME: HOSTILE_NAME},
                  config={"prompt": "</pre><script>alert(3)</script>"})
    build_site([results], root / "site", include_reported=False)
    return results, root / "site"


@pytest.fixture
def artifacts_dir(repo_root: Path) -> Path:
    out = repo_root / "test-artifacts"
    out.mkdir(exist_ok=True)
    return out


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
