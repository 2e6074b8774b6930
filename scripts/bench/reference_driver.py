"""Runs the SynthesizeMe reference (PyPI synthesizeme 0.0.11a1, DSPy 2.6) for a few users against a
server; run by protocol_vs_reference.py inside the reference's own venv (``--ref-python``).

    python reference_driver.py JOB.json

JOB: {"base_url", "model", "program" (a persona program file), "users": {uid: {"train", "val", "test"}}}
with rows in the published schema. The reference runs as shipped: ``SynthesizeMe(...).fit(train,
val_data=val)`` then ``evaluate(test)``, one worker (``num_workers=1``, ``num_workers_bootstrap=1``) so
that its requests arrive in order and its DSPy cache answers repeats deterministically. The only
addition is instrumentation: markers posted to the server around each candidate evaluation and each
user's first search, so the caller can count calls per candidate. Nothing in its behaviour changes.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import urllib.request

os.environ.setdefault("DSPY_CACHEDIR", tempfile.mkdtemp(prefix="ref-dspy-cache-"))  # a fresh cache per run


def main(job_file: str) -> None:
    job = json.loads(open(job_file, encoding="utf-8").read())
    base = job["base_url"]

    def mark(label: str) -> None:
        req = urllib.request.Request(base + "/__mark", data=json.dumps({"label": label}).encode(),
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req).read()

    import dspy
    from synthesizeme.dspy_patch import random_search
    from synthesizeme.personalrm.synthesizeme import SynthesizeMe
    from synthesizeme.utils import dspy_methods

    asked = [0]  # LM calls made by the program, cache hits included
    lm_call = dspy.LM.__call__

    def counted_call(self, *args, **kwargs):
        asked[0] += 1
        return lm_call(self, *args, **kwargs)

    dspy.LM.__call__ = counted_call
    evaluate_cls = random_search.Evaluate

    class MarkedEvaluate(evaluate_cls):  # the class the random search scores each candidate with
        def __call__(self, *args, **kwargs):
            mark("candidate-start")
            start = asked[0]
            try:
                return super().__call__(*args, **kwargs)
            finally:
                mark(f"candidate-end:{asked[0] - start}")

    random_search.Evaluate = MarkedEvaluate
    persona_forward = dspy_methods.GeneratePersonaProgram.forward

    def marked_forward(self, *args, **kwargs):
        mark("search1-start")
        try:
            return persona_forward(self, *args, **kwargs)
        finally:
            mark("search1-end")

    dspy_methods.GeneratePersonaProgram.forward = marked_forward

    out = {}
    for uid, rows in job["users"].items():
        mark(f"user:{uid}")
        sm = SynthesizeMe(user_id=uid, model_id=job["model"], model_url=base, num_workers=1,
                          num_workers_bootstrap=1, persona_synthesis_program_path=job["program"])
        sm.pbar = None
        sm.fit(rows["train"], val_data=rows["val"])
        mark("predict")
        res = sm.evaluate(rows["test"])
        demos = sm.program.judge_persona.predict.demos  # (get_demos() fails on raw demos: no 'augmented')
        out[uid] = {"persona": sm.get_persona(), "accuracy": float(res["mean"]), "demos": len(demos),
                    "demos_with_reasoning": sum(1 for d in demos if "reasoning" in d)}
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
