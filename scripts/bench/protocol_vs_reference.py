"""SynthesizeMe: the reference (PyPI synthesizeme 0.0.11a1 under DSPy 2.6) and ours, call for call.

Both run against one fake OpenAI-compatible server on 127.0.0.1 that records every
request (recording_server.py: it decides First/Second from the two responses alone,
in the format each side parses). Same 3 users (published-schema rows with ``flip``),
same persona program (the reference's Theta trimmed to one worked example, read
from the reference package: ``--program full`` keeps all six). The reference runs in
its own venv (``--ref-python``; see reference_driver.py), ours in its default
configuration through ``prb evaluate --backend openai --base-url ...``. Printed per
user and phase: requests that reached the server, demos per judge prompt, persona
writer input, and requests per validation candidate (judgments asked / sent).

    python scripts/bench/protocol_vs_reference.py   # the reference's venv: $PRB_REF_VENV, else .venv-ref (scripts/setup test)
    python scripts/bench/protocol_vs_reference.py --json out.json --program full

The reference venv: synthesizeme==0.0.11a1, dspy==2.6.24, litellm==1.63.14, openai==1.109.1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from recording_server import MODEL, RecordingServer  # noqa: E402

MARK = re.compile(r"\[(u\d+) ([tvx])(\d+)\]")
PHASES = ("bootstrap 1", "search 1 validation", "persona writer", "bootstrap 2", "search 2 validation", "predict")
SIZES = {"u0": (6, 3, 2), "u1": (7, 3, 2), "u2": (8, 3, 2)}  # train, val, test pairs per user
TOPICS = ("boiling an egg", "a cover letter", "sorting a list in Python", "a trip to Lisbon", "sleep habits",
          "a birthday poem", "tax forms", "learning chess")


def rows_for(uid: str) -> dict[str, list[dict[str, Any]]]:
    """Published-schema rows (user_id, conversation_id, context, chosen, rejected, split, flip, ...)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for split, tag, n in zip(("train", "val", "test"), "tvx", SIZES[uid], strict=True):
        rows = []
        for i in range(n):
            h = int(hashlib.sha256(f"{uid}{tag}{i}".encode()).hexdigest(), 16)
            topic = TOPICS[h % len(TOPICS)]
            rows.append({
                "user_id": uid, "conversation_id": f"{uid}-{tag}{i}", "split": split, "flip": bool(h >> 8 & 1),
                "context": [{"role": "user", "content": f"Can you help me with {topic}? [{uid} {tag}{i}]"}],
                "chosen": {"role": "model", "content": f"Here is a short, direct answer about {topic} ({h % 97})."},
                "rejected": {"role": "model", "content": f"Let me explain {topic} at length, step by step "
                                                         f"({h % 89})."},
                "turns": 1, "type": "unguided", "dataset": "protocol-figure"})
        out[split] = rows
    return out


def ref_program(ref_python: str, keep: int | None, tmp: Path) -> Path:
    """The reference's Theta (read from its installed package), trimmed to ``keep`` worked examples."""
    src = subprocess.run([ref_python, "-c", "import importlib.resources as r; "
                          "print(r.files('synthesizeme').joinpath('prompts/llama70b.json'))"],
                         check=True, capture_output=True, text=True).stdout.strip()
    data = json.loads(Path(src).read_text(encoding="utf-8"))
    if keep is not None:
        data["synthesize.predict"]["demos"] = data["synthesize.predict"]["demos"][:keep]
    out = tmp / "theta.json"
    out.write_text(json.dumps(data))
    return out


# ----------------------------------------------------------------------------- analysis


def classify(body: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """(user, phase, details) of one recorded chat request, for either side."""
    msgs = body["messages"]
    last, system = str(msgs[-1]["content"]), str(msgs[0]["content"]) if msgs[0]["role"] == "system" else ""
    demos = sum(m["role"] == "assistant" for m in msgs)
    if "[[ ## past_judgements ## ]]" in last or "Now write the persona." in last:
        marks = {m.group(0) for m in MARK.finditer(last)}
        uid = MARK.search(last).group(1)
        return uid, "persona writer", {"worked_examples": demos, "past_judgments": len(marks),
                                       "max_tokens": body.get("max_tokens"), "temperature": body.get("temperature")}
    m = MARK.search(last)
    persona = "FOLLOWING PERSONA" in system or "<persona>" in system
    kind = m.group(2)
    phase = {"t": "bootstrap", "v": "search", "x": "predict"}[kind]
    if phase != "predict":
        phase = f"{phase} {2 if persona else 1}" + (" validation" if kind == "v" else "")
    return m.group(1), phase, {"demos": demos, "max_tokens": body.get("max_tokens"),
                               "temperature": body.get("temperature")}


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    calls: dict[tuple[str, str], int] = Counter()
    demos: dict[tuple[str, str], Counter] = defaultdict(Counter)
    writer: dict[str, list] = {}
    settings: Counter = Counter()
    for r in records:
        if "request" not in r:
            continue
        uid, phase, d = classify(r["request"])
        calls[uid, phase] += 1
        settings[(d["temperature"], d["max_tokens"])] += 1
        if phase == "persona writer":
            writer[uid] = [d["worked_examples"], d["past_judgments"]]
        else:
            demos[uid, phase][d["demos"]] += 1
    return {"calls": calls, "demos": demos, "writer": writer, "settings": settings}


def ref_candidates(records: list[dict[str, Any]]) -> dict[tuple[str, str], list[list[int]]]:
    """(user, search) -> [judgments asked, requests sent] per candidate, from the driver's markers."""
    out: dict[tuple[str, str], list[list[int]]] = defaultdict(list)
    uid, search, sent = "", "search 2", None
    for r in records:
        label = r.get("mark")
        if label is None:
            if sent is not None:
                sent += 1
            continue
        if label.startswith("user:"):
            uid = label[5:]
        elif label == "search1-start":
            search = "search 1"
        elif label == "search1-end":
            search = "search 2"
        elif label == "candidate-start":
            sent = 0
        elif label.startswith("candidate-end"):
            out[uid, search].append([int(label.split(":")[1]), sent])
            sent = None
    return out


def our_candidates(usage: dict[str, Any]) -> dict[tuple[str, str], list[list[int]]]:
    out = {}
    for uid, info in usage["per_user"].items():
        for n in (1, 2):
            if f"search{n}_candidates" in info:
                out[uid, f"search {n}"] = [[j, s] for _, _, j, s in info[f"search{n}_candidates"]]
    return out


# ----------------------------------------------------------------------------- runs


def run_reference(ref_python: str, server: RecordingServer, users: dict, program: Path, tmp: Path) -> dict:
    job = tmp / "job.json"
    job.write_text(json.dumps({"base_url": server.url, "model": MODEL, "program": str(program), "users": users}))
    proc = subprocess.run([ref_python, str(HERE / "reference_driver.py"), str(job)], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp), "DSPY_CACHEDIR": str(tmp / "dspy-cache"),
                               "LITELLM_LOCAL_MODEL_COST_MAP": "True", "TQDM_DISABLE": "1"})
    if proc.returncode != 0:
        sys.exit(f"the reference failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_ours(server: RecordingServer, users: dict, program: Path, tmp: Path, extra: dict) -> dict:
    from personalrewardbench.cli import main

    data = tmp / "figure-users.jsonl"
    with data.open("w") as f:
        for rows in users.values():
            for split in ("train", "val", "test"):
                for row in rows[split]:
                    f.write(json.dumps(row) + "\n")
    out = tmp / "results"
    rc = main(["evaluate", "--method", "synthesizeme", "--dataset", str(data), "--backend", "openai",
               "--base-url", server.url, "--model", MODEL, "--cache-dir", str(tmp / "llm-cache"), "--out", str(out),
               "--config", json.dumps({"persona_program": str(program), **extra}), "--bootstrap", "100", "--quiet"])
    if rc != 0:
        sys.exit(f"prb evaluate failed (exit {rc})")
    return json.loads(next(out.rglob("results.json")).read_text())


def _hist(c: Counter) -> str:
    return " ".join(f"{k}:{v}" for k, v in sorted(c.items())) or "-"


def table(ref: dict, ours: dict, ref_cands: dict, our_cands: dict) -> tuple[str, bool]:
    lines = [f"{'user':5s} {'phase':20s} {'calls ref':>9s} {'ours':>5s}  {'demos/prompt ref (n:calls)':28s} "
             f"{'ours':28s} match"]
    ok_all = True
    for uid in SIZES:
        for phase in PHASES:
            rc, oc = ref["calls"][uid, phase], ours["calls"][uid, phase]
            if phase == "persona writer":
                rd, od = ref["writer"].get(uid), ours["writer"].get(uid)
                rd_s = f"{rd[0]} worked ex + {rd[1]} judgments" if rd else "-"
                od_s = f"{od[0]} worked ex + {od[1]} judgments" if od else "-"
                ok = rc == oc and rd == od
            else:
                rd_s, od_s = _hist(ref["demos"][uid, phase]), _hist(ours["demos"][uid, phase])
                ok = rc == oc and rd_s == od_s
            ok_all &= ok
            lines.append(f"{uid:5s} {phase:20s} {rc:9d} {oc:5d}  {rd_s:28s} {od_s:28s} {'yes' if ok else 'NO'}")
    lines.append("")
    lines.append("validation per candidate, in scan order: judgments asked/requests sent (the rest from the cache)")
    for uid in SIZES:
        for search in ("search 1", "search 2"):
            r, o = ref_cands.get((uid, search), []), our_cands.get((uid, search), [])
            ok = r == o
            ok_all &= ok
            fmt = " ".join(f"{a}/{s}" for a, s in r)
            fmt_o = " ".join(f"{a}/{s}" for a, s in o)
            lines.append(f"{uid:5s} {search:9s} ref  ({len(r):2d} candidates) {fmt}")
            lines.append(f"{'':5s} {'':9s} ours ({len(o):2d} candidates) {fmt_o}   {'match' if ok else 'DIFFERENT'}")
    lines.append("")
    lines.append(f"(temperature, max_tokens) of every request: ref {dict(ref['settings'])}, ours {dict(ours['settings'])}")
    ok_all &= set(ref["settings"]) == set(ours["settings"])
    return "\n".join(lines), ok_all


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_ref = Path(os.environ.get("PRB_REF_VENV") or Path(__file__).resolve().parents[2] / ".venv-ref")
    ap.add_argument("--ref-python", default=str(default_ref / "bin" / "python"),
                    help="python of a venv with synthesizeme==0.0.11a1, dspy 2.6.24, litellm 1.63.14, openai 1.109.1 "
                         "(default: $PRB_REF_VENV/bin/python, else .venv-ref/bin/python, which `scripts/setup test` "
                         "makes)")
    ap.add_argument("--program", choices=("trimmed", "full"), default="trimmed",
                    help="the reference's Theta with one worked example (default) or all six")
    ap.add_argument("--our-config", default="{}",
                    help="JSON of extra SynthesizeMe settings for our side (default: none, its defaults), e.g. "
                         "'{\"validation_orders\": \"both\"}' to see a variant's calls differ")
    ap.add_argument("--json", type=Path, help="also write the counts here")
    args = ap.parse_args()
    users = {uid: rows_for(uid) for uid in SIZES}
    with tempfile.TemporaryDirectory(prefix="prb-protocol-") as t:
        tmp = Path(t)
        program = ref_program(args.ref_python, 1 if args.program == "trimmed" else None, tmp)
        server = RecordingServer().start()
        try:
            (tmp / "ref").mkdir()
            ref_out = run_reference(args.ref_python, server, users, program, tmp / "ref")
            ref_records = server.take()
            (tmp / "ours").mkdir()
            results = run_ours(server, users, program, tmp / "ours", json.loads(args.our_config))
            our_records = server.take()
        finally:
            server.stop()
    ref, ours = summarize(ref_records), summarize(our_records)
    text, ok = table(ref, ours, ref_candidates(ref_records), our_candidates(results["method_usage"]))
    print(f"SynthesizeMe, reference vs ours on one recording server; {len(SIZES)} users "
          f"(train/val/test pairs {', '.join('/'.join(map(str, s)) for s in SIZES.values())}); persona program: "
          f"the reference's Theta, {args.program}")
    print(f"requests that reached the server: reference {sum(ref['calls'].values())}, ours {sum(ours['calls'].values())}")
    print(text)
    print("reference final programs (demos held / with reasoning, i.e. shown):",
          {u: f"{v['demos']}/{v['demos_with_reasoning']}" for u, v in ref_out.items()})
    print("CALL-FOR-CALL MATCH" if ok else "SHAPES DIFFER")
    if args.json:
        args.json.write_text(json.dumps({
            "reference": {"calls": {f"{u}|{p}": n for (u, p), n in ref["calls"].items()}, "writer": ref["writer"]},
            "ours": {"calls": {f"{u}|{p}": n for (u, p), n in ours["calls"].items()}, "writer": ours["writer"]},
            "match": ok}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
