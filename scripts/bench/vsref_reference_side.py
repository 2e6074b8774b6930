"""The reference side of bench_vs_reference.py: run the published SynthesizeMe package on given users.

Runs INSIDE the reference's own virtual environment (synthesizeme==0.0.11a1,
dspy 2.6.x, litellm 1.63.14), never in this project's: it imports nothing
from personalrewardbench.

    <ref-venv>/bin/python vsref_reference_side.py --spec spec.json --out result.json

The spec (written by bench_vs_reference.py) names the server (an OpenAI base
URL, normally the counting proxy), the model, the reply cap, the reference's
own settings and, per user, the train/val/test rows in the reference's input
form ({context, chosen, rejected, flip, conversation_id, user_id}).

What it does, per user, one user after the other as the package is used:
``SynthesizeMe(...).fit(train, val)``, then the package's own
``evaluate(test)`` (every test pair judged in both orders). The persona
writer program is the package's own shipped file (``prompts/<name>.json``),
read from the installed package at run time and written out with only its
``persona_examples`` shortest worked examples, so that its prompts fit an 8k
context. An exception inside ``fit`` is recorded (the user counts as not
fitted) and the next user runs. The result file is rewritten after each user.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any


def shorten_program(program: dict[str, Any], keep: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """A copy of a DSPy program dict whose predictor keeps only its ``keep`` shortest demos (original order)."""
    key = next((k for k in program if isinstance(program[k], dict) and "demos" in program[k]), None)
    if key is None:
        raise ValueError("the persona program has no predictor with 'demos'; is it a DSPy program file?")
    demos = program[key]["demos"]
    size = [len(json.dumps(d)) for d in demos]
    kept = sorted(sorted(range(len(demos)), key=lambda i: (size[i], i))[:max(0, keep)])
    out = {**program, key: {**program[key], "demos": [demos[i] for i in kept]}}
    return out, {"examples_shipped": len(demos), "examples_kept": kept, "chars_kept": sum(size[i] for i in kept)}


def shorten_persona_program(name: str, keep: int, out: Path) -> dict[str, Any]:
    """Write the installed package's persona program ``prompts/<name>.json`` with its ``keep`` shortest examples."""
    src = importlib.resources.files("synthesizeme").joinpath(f"prompts/{name}.json")
    program, info = shorten_program(json.loads(src.read_text(encoding="utf-8")), keep)
    out.write_text(json.dumps(program, indent=1), encoding="utf-8")
    return {"source": str(src), **info}


def _write(out: Path, result: dict[str, Any]) -> None:
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1), encoding="utf-8")
    os.replace(tmp, out)


def run_user(user: dict[str, Any], spec: dict[str, Any], lm: Any, program_path: Path) -> dict[str, Any]:
    from synthesizeme.personalrm.synthesizeme import SynthesizeMe

    uid = user["user_id"]
    rec: dict[str, Any] = {"user_id": uid, "fit_ok": False, "error": None}
    sm = SynthesizeMe(user_id=uid, lm=lm, seed=spec["seed"], num_search_candidates=spec["num_candidates"],
                      num_workers=spec["num_workers"], num_workers_bootstrap=spec["num_workers_bootstrap"],
                      persona_synthesis_program_path=str(program_path))
    rec["fit_start"] = time.time()
    try:
        sm.fit(user["train"], user["val"])
        rec["fit_ok"] = True
    except Exception as exc:  # noqa: BLE001 - the reference's own failures are what we record
        rec["error"] = f"{type(exc).__name__}: {exc}"
        rec["traceback_tail"] = traceback.format_exc().strip().splitlines()[-6:]
    rec["fit_end"] = time.time()
    if not rec["fit_ok"]:
        return rec
    rec["persona"] = getattr(sm, "persona", None)
    try:
        rec["n_demos"] = len(sm.get_demos())
    except Exception:  # noqa: BLE001
        rec["n_demos"] = None
    raw: list[int] = []
    original = sm.predict_pairwise

    def recording(*args: Any) -> int:  # the package's evaluate() calls this for every judgment
        value = original(*args)
        raw.append(value)
        return value

    sm.predict_pairwise = recording  # type: ignore[method-assign]
    rec["predict_start"] = time.time()
    try:
        scores = sm.evaluate(user["test"])
        results = [int(x) for x in scores["results"]]
        rec.update(judgments=len(results), correct=sum(results), ties_or_failed=sum(1 for v in raw if v == 0))
    except Exception as exc:  # noqa: BLE001
        rec["predict_error"] = f"{type(exc).__name__}: {exc}"
    rec["predict_end"] = time.time()
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--program-only", type=Path, default=None,
                    help="only write the shortened persona program here (with --persona-program, --persona-examples)")
    ap.add_argument("--persona-program", default="llama70b")
    ap.add_argument("--persona-examples", type=int, default=1)
    args = ap.parse_args(argv)
    if args.program_only is not None:
        info = shorten_persona_program(args.persona_program, args.persona_examples, args.program_only)
        print(json.dumps(info))
        return 0
    if args.spec is None or args.out is None:
        ap.error("--spec and --out are required")
    spec = json.loads(args.spec.read_text(encoding="utf-8"))
    import dspy

    program_path = args.out.with_name("persona_program_short.json")
    result: dict[str, Any] = {
        "versions": {"dspy": dspy.__version__, "python": sys.version.split()[0]},
        "persona_program": shorten_persona_program(spec["persona_program"], spec["persona_examples"], program_path),
        "users": [],
    }
    try:
        from importlib.metadata import version

        result["versions"].update(synthesizeme=version("synthesizeme"), litellm=version("litellm"))
    except Exception:  # noqa: BLE001
        pass
    lm = dspy.LM(spec["model"], api_base=spec["api_base"], api_key=spec.get("api_key", "local"),
                 model_type="chat", temperature=spec["temperature"], max_tokens=spec["max_tokens"])
    dspy.configure(lm=lm)  # the package's retry helper reads dspy.settings.lm
    _write(args.out, result)
    for user in spec["users"]:
        print(f"[reference] user {user['user_id']}: fit on {len(user['train'])} train + {len(user['val'])} val",
              file=sys.stderr, flush=True)
        rec = run_user(user, spec, lm, program_path)
        result["users"].append(rec)
        _write(args.out, result)
        print(f"[reference] user {user['user_id']}: fit {'ok' if rec['fit_ok'] else 'FAILED: ' + str(rec['error'])} "
              f"in {rec['fit_end'] - rec['fit_start']:.1f}s", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
