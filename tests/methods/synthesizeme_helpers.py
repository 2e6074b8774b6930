"""Shared by the SynthesizeMe protocol tests: a recording scripted LLM, a user with known labels,
scripted judges, and a fake installed ``synthesizeme`` distribution holding a DSPy program file."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

from personalrewardbench.data.schema import Message, PreferencePair, UserHistory
from personalrewardbench.llm.scripted import ScriptedLLM
from personalrewardbench.methods import MethodEnv, load_method

TRAIN_FLIPS = (True, False, True, True, False, True)  # golds F S F F S F (flip: chosen shown first)
VAL_FLIPS = (True, False, False)  # golds F S S
TAG = re.compile(r"question (\w+) of (\w+)")


def pair(uid: str, tag: str, split: str, flip: bool) -> PreferencePair:
    return PreferencePair(f"{uid}-{tag}", uid, "d", (Message("user", f"question {tag} of {uid}"),),
                          f"chosen {tag} CHOSEN", f"rejected {tag}", split, meta={"flip": flip})


def history(uid: str = "u", train_flips=TRAIN_FLIPS, val_flips=VAL_FLIPS) -> UserHistory:
    return UserHistory(uid, "d", tuple(pair(uid, f"t{i}", "train", f) for i, f in enumerate(train_flips)),
                       tuple(pair(uid, f"v{i}", "val", f) for i, f in enumerate(val_flips)))


class RecordingLLM(ScriptedLLM):
    """Records every request a method asks for (``asked``) and every one that reaches the model
    (``sent``: cache misses, as a server behind the cache would see them). Cache on, like the reference's."""

    def __init__(self, fn, cache_dir: Path, **kw) -> None:
        super().__init__(fn, use_cache=True, cache_dir=str(cache_dir), **kw)
        self.asked: list = []
        self.sent: list = []

    def generate(self, chats, params=None):
        self.asked += [(tuple(c), params) for c in chats]
        return super().generate(chats, params)

    def _generate(self, chats, params):
        self.sent += [(tuple(c), params) for c in chats]
        return super()._generate(chats, params)


def is_writer(chat) -> bool:
    return "Now write the persona." in chat[-1].content


def query_tag(chat) -> str:
    return TAG.search(chat[-1].content).group(1)


def demo_tags(chat) -> tuple[str, ...]:
    """The pairs shown as worked examples in a judge chat (user turns between system and query)."""
    return tuple(TAG.search(m.content).group(1) for m in chat[1:-1] if m.role == "user")


def has_persona(chat) -> bool:
    return "<persona>" in chat[0].content


def classify(requests) -> dict[str, list]:
    """Requests by phase: writer, teacher (train query), val, test; persona judge or plain."""
    out: dict[str, list] = {}
    for chat, params in requests:
        if is_writer(chat):
            key = "writer"
        else:
            kind = {"t": "train", "v": "val", "x": "test"}[query_tag(chat)[0]]
            key = f"{kind}-{'persona' if has_persona(chat) else 'plain'}"
        out.setdefault(key, []).append((chat, params))
    return out


def shown_answer(chat) -> str:
    """The gold of the query as presented: the CHOSEN response shown first or second."""
    body = chat[-1].content
    first = body.split("## First response\n", 1)[1].split("\n\n## Second response", 1)[0]
    return "First" if "CHOSEN" in first else "Second"


def reply(choice: str) -> str:
    return f"Reasoning: a guess about the person.\nPreference: [[{choice}]]"


PERSONA_REPLY = "Reasoning: they like marked answers.\nPersona: Prefers replies marked CHOSEN."


def always(choice: str):
    def fn(chat, params):
        return PERSONA_REPLY if is_writer(chat) else reply(choice)
    return fn


def demo_sensitive(zero_shot: str):
    """Answers ``zero_shot`` without worked examples, the shown gold with at least one."""
    def fn(chat, params):
        if is_writer(chat):
            return PERSONA_REPLY
        return reply(shown_answer(chat) if demo_tags(chat) else zero_shot)
    return fn


def program_json(n_examples: int = 2, words: int = 5) -> dict:
    """A persona program in the DSPy 2.6 saved-program format (the reference's Theta files' schema)."""
    demos = [{"augmented": True, "past_judgements": f"example judgments {i} " + "word " * words,
              "reasoning": f"example reasoning {i}", "synthesized_persona": f"example persona {i}"}
             for i in range(n_examples)]
    return {"synthesize.predict": {
        "lm": None, "traces": [], "train": [], "demos": demos,
        "signature": {"instructions": "Write a persona from these judgments (test program).",
                      "fields": [{"prefix": "Past Judgements:", "description": "judgments"},
                                 {"prefix": "Reasoning: Let's think step by step in order to",
                                  "description": "${reasoning}"},
                                 {"prefix": "Synthesized Persona:", "description": "the persona"}]}},
        "metadata": {"dependency_versions": {"python": "3.12", "dspy": "2.6.12", "cloudpickle": "3.1"}}}


def install_fake_reference(root: Path, monkeypatch, program: dict | None = None) -> Path:
    """A ``synthesizeme`` distribution (dist-info + prompts/llama70b.json) on sys.path; returns the program file."""
    site = root / "site"
    pkg = site / "synthesizeme"
    (pkg / "prompts").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    prog = pkg / "prompts" / "llama70b.json"
    prog.write_text(json.dumps(program or program_json()))
    info = site / "synthesizeme-0.0.11a1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: SynthesizeMe\nVersion: 0.0.11a1\n")
    (info / "RECORD").write_text("synthesizeme/__init__.py,,\nsynthesizeme/prompts/llama70b.json,,\n")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    return prog


def fit(llm, histories, **config):
    method = load_method("synthesizeme", config)
    method.setup(MethodEnv(seed=0, llm=llm, show_progress=False))
    method.fit(histories)
    return method
