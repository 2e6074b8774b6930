"""The CPU plan of `prb run`: what the main job runs on the embedded models on a CPU, and why.

`prb run` uses it when the LLM is the embedded SmolLM2-135M on the transformers backend and
``--full`` is not given (see :func:`personalrewardbench.run_command.make_plan`): smaller method
settings, substitutes for the methods that do not fit a CPU budget, and fewer users for the
methods that train a network or call the LLM. Everything it changes is printed at the start of a
run and recorded in each results.json (method name and config).
"""

from __future__ import annotations

from typing import Any

CPU_USERS_ON_PUBLISHED = 20
# On the embedded CPU plan, methods that train a network or call the LLM run on a seeded subset of users (nested
# in the others' sample): the 135M judges score near chance, so more users would only cost time.
CPU_HEAVY_USERS = 8
# SynthesizeMe makes several generations per user and per judgment (about 70% of the CPU time of the whole
# default run with 8 users): it gets fewer, so `prb run` stays within 10 minutes on 2 quiet cores.
CPU_HEAVY_USERS_BY_METHOD: dict[str, int] = {"synthesizeme-just-personas": 4, "synthesizeme": 4}
HEAVY_CAPABILITIES = frozenset({"llm", "train-rm"})
# Settings that keep the embedded 135M model on 2 CPU cores within minutes (recorded in each
# results.json config, so the leaderboard shows exactly what ran). `--full` drops them. The persona
# writer uses the built-in instruction (the reference's Theta, ~20k tokens, does not fit 8k).
SMALL_SETTINGS: dict[str, dict[str, Any]] = {
    "synthesizeme-just-personas": {"max_bootstrapped_demos": 2, "max_labeled_demos": 2, "persona_source": "verified",
                                   "max_judge_tokens": 48, "max_persona_tokens": 96, "persona_program": "builtin"},
    "memory-direct": {"max_history": 2},
    "bt-rm": {"epochs": 1, "max_length": 192},
}
# What runs instead of a default method on the embedded CPU model (--full, a named model or an explicit
# --methods NAME runs the method itself), and why. The reference's chain-of-thought judges (replies up
# to 8,192 tokens, answer parsed from the text) do not fit the CPU budget: with SmolLM2-135M and a
# 48-token reply cap most of their judgments ended unreadable (failed), so their direct variants
# (choice log-probabilities of "First"/"Second", never unreadable) run under their own names. The full
# SynthesizeMe (two demo searches over every user's validation pairs) takes far longer than the main
# job's budget; its just-personas ablation (bootstrap verified reasoning -> persona ->
# persona-conditioned judge) runs instead.
_DIRECT_WHY = ("its direct log-prob variant (P(first) from the choice log-probabilities; the chain-of-thought "
               "judge's long replies do not fit the CPU budget, and cut short most of its answers cannot be read)")
SMALL_SUBSTITUTES: dict[str, tuple[str, str]] = {
    "default-judge": ("default-judge-direct", _DIRECT_WHY),
    "memory": ("memory-direct", _DIRECT_WHY),
    "demographics": ("demographics-direct", _DIRECT_WHY),
    "synthesizeme": ("synthesizeme-just-personas", "its just-personas ablation (the full method searches demos "
                     "for far longer)"),
}
