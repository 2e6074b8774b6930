"""The persona writer's program ("Theta"): an instruction plus worked examples, read at run time.

The reference ships Theta as a DSPy program file inside its PyPI package
(``synthesizeme/prompts/llama70b.json``, the default for every model; also
``llama8b.json`` and ``llama3b.json``), found by MIPROv2 on PRISM. Nothing of it is
copied into this repository: ``persona_program="reference"`` locates the file of
the installed ``synthesizeme`` distribution (``pip install
'personalrewardbench[reference]'``) and reads it when the method is set up.
``persona_program=<path>`` reads any program file in the same format, and
``"builtin"`` uses this project's zero-shot instruction.

DSPy program file format (DSPy 2.6 ``Module.save``; one predictor): a JSON object
whose one entry ``"<name>.predict"`` holds ``signature.instructions`` (text),
``signature.fields`` (a list of ``{prefix, description}``: the input field first,
the output field last, and a ``Reasoning:`` field for chain of thought) and
``demos`` (a list of objects keyed by field name: the worked examples). A field's
name is its prefix in snake case ("Past Judgements:" -> ``past_judgements``), the
rule DSPy uses to make prefixes from names.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from personalrewardbench.methods import MethodError

REFERENCE_DISTRIBUTION = "synthesizeme"
REFERENCE_PROGRAMS = {"llama70b": "prompts/llama70b.json", "llama8b": "prompts/llama8b.json",
                      "llama3b": "prompts/llama3b.json"}
REFERENCE_DEFAULT = "llama70b"  # SynthesizeMe.__init__ uses it whatever the model
INSTALL_HINT = ("install the reference package's files with `pip install 'personalrewardbench[reference]'` "
                "(or `pip install --no-deps synthesizeme==0.0.11a1`), pass persona_program=<path of a DSPy "
                "program file>, or use persona_program=builtin (this project's zero-shot instruction)")


@dataclass(frozen=True)
class WorkedExample:
    """One worked example of the persona writer: past judgments in, reasoning and persona out."""

    judgments: str
    reasoning: str | None
    persona: str


@dataclass(frozen=True)
class PersonaProgram:
    instruction: str
    examples: tuple[WorkedExample, ...]
    source: str  # where it was read from (recorded in the method's config summary)


def _field_name(prefix: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", prefix.split(":")[0].strip().lower()).strip("_")


def reference_program_path(which: str = REFERENCE_DEFAULT) -> Path:
    """The program file inside the installed ``synthesizeme`` distribution.

    Raises :class:`MethodError` (with the install command) when it is not installed.
    """
    if which not in REFERENCE_PROGRAMS:
        raise MethodError(f"synthesizeme: persona_program=reference:{which} is not one of the reference's "
                          f"programs ({', '.join(sorted(REFERENCE_PROGRAMS))})")
    rel = REFERENCE_PROGRAMS[which]
    try:
        dist = importlib.metadata.distribution(REFERENCE_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise MethodError("synthesizeme: persona_program=reference reads the Theta program from the "
                          f"`{REFERENCE_DISTRIBUTION}` package, which is not installed: {INSTALL_HINT}") from None
    for f in dist.files or ():
        if str(f).replace("\\", "/") == f"{REFERENCE_DISTRIBUTION}/{rel}":
            path = Path(str(dist.locate_file(f)))
            if path.is_file():
                return path
    try:  # a distribution without a file list: ask the package (its __init__ only reads metadata)
        path = Path(str(importlib.resources.files(REFERENCE_DISTRIBUTION).joinpath(rel)))
    except ModuleNotFoundError:
        path = Path()
    if path.is_file():
        return path
    raise MethodError(f"synthesizeme: the installed `{REFERENCE_DISTRIBUTION}` {dist.version} has no {rel}; "
                      f"{INSTALL_HINT}")


def parse_program(data: Any, source: str) -> PersonaProgram:
    """A DSPy program object (see the module doc) -> :class:`PersonaProgram`; MethodError names the problem."""
    def bad(why: str) -> MethodError:
        return MethodError(f"synthesizeme: persona program {source}: {why}. Give a DSPy program file "
                           "(one predictor with signature.instructions, signature.fields and demos).")

    if not isinstance(data, dict):
        raise bad("the file is not a JSON object")
    preds = [(k, v) for k, v in data.items() if isinstance(v, dict) and "signature" in v]
    if len(preds) != 1:
        raise bad(f"expected exactly one predictor entry with a 'signature', found {len(preds)}")
    name, pred = preds[0]
    sig = pred.get("signature")
    instruction = sig.get("instructions") if isinstance(sig, dict) else None
    fields = sig.get("fields") if isinstance(sig, dict) else None
    if not isinstance(instruction, str) or not instruction.strip():
        raise bad(f"{name}.signature.instructions is missing or empty")
    if not isinstance(fields, list) or len(fields) < 2 or not all(isinstance(f, dict) and f.get("prefix")
                                                                  for f in fields):
        raise bad(f"{name}.signature.fields must list at least an input and an output field, each with a prefix")
    names = [_field_name(str(f["prefix"])) for f in fields]
    in_name, out_name = names[0], names[-1]
    reasoning_name = next((n for n in names[1:-1] if n.startswith("reasoning")), None)
    demos = pred.get("demos", [])
    if not isinstance(demos, list):
        raise bad(f"{name}.demos must be a list")
    examples = []
    for i, d in enumerate(demos):
        if not isinstance(d, dict) or not isinstance(d.get(in_name), str) or not isinstance(d.get(out_name), str):
            raise bad(f"{name}.demos[{i}] lacks the text fields {in_name!r} and {out_name!r}")
        reasoning = d.get(reasoning_name or "reasoning")
        examples.append(WorkedExample(d[in_name], reasoning if isinstance(reasoning, str) else None, d[out_name]))
    return PersonaProgram(instruction.strip(), tuple(examples), source)


def load_program(spec: str) -> PersonaProgram | None:
    """``"builtin"`` -> None; ``"reference"`` / ``"reference:<llama70b|llama8b|llama3b>"`` -> the installed
    reference's program; anything else -> the program file at that path. Raises MethodError."""
    spec = str(spec).strip()
    if spec == "builtin":
        return None
    if spec == "reference" or spec.startswith("reference:"):
        which = spec.split(":", 1)[1] if ":" in spec else REFERENCE_DEFAULT
        path = reference_program_path(which)
        dist = importlib.metadata.distribution(REFERENCE_DISTRIBUTION)
        source = f"{REFERENCE_DISTRIBUTION}=={dist.version}:{REFERENCE_PROGRAMS[which]}"
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise MethodError(f"synthesizeme: persona_program={spec!r}: no such file. Give the path of a DSPy "
                              "program file, 'reference' (the installed synthesizeme package's Theta) or 'builtin'.")
        source = str(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise MethodError(f"synthesizeme: persona program {path}: cannot read it as JSON ({exc})") from None
    return parse_program(data, source)
