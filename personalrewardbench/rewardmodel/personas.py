"""Per-user personas for persona-conditioned reward models.

Taken from a SynthesizeMe results folder (its ``artifacts.json``: ``{user_id: persona}``) or
computed by running the SynthesizeMe method itself (needs ``env.llm``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from personalrewardbench.data.schema import UserHistory
from personalrewardbench.methods import MethodEnv, MethodError
from personalrewardbench.missing import is_missing, present_text

_NO_PERSONA = "(the persona writer gave no persona)"


def extract_persona(text: str) -> str | None:
    """The persona inside a SynthesizeMe artifact ("Persona:\n<persona>\n\nDemos (...) ..."), or the
    whole text for artifacts that are just a persona. None when the artifact has no persona."""
    head = "Persona:\n"
    if not text.startswith(head):
        return present_text(text) if "\nChosen candidate:" not in text else None
    body = text[len(head):]
    cut = body.rfind("\n\nDemos (")
    persona = (body[:cut] if cut >= 0 else body).strip()
    return None if is_missing(persona) or persona == _NO_PERSONA else persona


def _personas_from_artifacts(artifacts: Mapping[str, str]) -> dict[str, str]:
    out = {}
    for uid, text in artifacts.items():
        persona = extract_persona(text)
        if persona is not None:
            out[str(uid)] = persona
    return out


def find_artifacts_file(source: Path | str) -> Path:
    """``artifacts.json`` itself, a run folder holding it, or a method folder with run folders
    below it (the most recently finished run is used)."""
    p = Path(source).expanduser()
    if p.is_file():
        return p
    if (p / "artifacts.json").is_file():
        return p / "artifacts.json"
    if p.is_dir():
        runs = sorted(p.glob("*/artifacts.json"), key=lambda f: f.stat().st_mtime)
        if runs:
            return runs[-1]
    raise MethodError(f"persona_source {str(p)!r} has no artifacts.json; point it at a SynthesizeMe results run "
                      "folder (results/<dataset>/synthesizeme/<run-id>/) or its artifacts.json")


def load_personas(source: Path | str) -> dict[str, str]:
    path = find_artifacts_file(source)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise MethodError(f"{path}: not readable JSON ({e}); rerun the SynthesizeMe evaluation") from e
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise MethodError(f"{path}: expected a JSON object {{user_id: persona text}}")
    return _personas_from_artifacts(data)


def compute_personas(histories: Sequence[UserHistory], env: MethodEnv, method: str = "synthesizeme",
                     config: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Run the persona-producing method (SynthesizeMe by default) and return its artifacts."""
    from personalrewardbench import methods as registry

    if env.llm is None:
        raise MethodError("bt-rm-persona needs personas: pass persona_source=<SynthesizeMe results folder> "
                          "(or --option persona_source=...) or give the harness an LLM to run SynthesizeMe")
    loader = getattr(registry, "load_method", None)
    if loader is None:
        raise MethodError("this install has no method registry (personalrewardbench.methods.load_method); "
                          "pass persona_source=<SynthesizeMe results folder> instead")
    m = loader(method, dict(config or {}))
    m.setup(env)
    m.fit(histories)
    return _personas_from_artifacts(m.artifacts())


def check_coverage(personas: Mapping[str, str], user_ids: Sequence[str], source: str) -> None:
    missing = sorted(set(user_ids) - set(personas))
    if missing:
        raise MethodError(f"{len(missing)} users have no persona in {source} (e.g. {missing[:3]}); use personas "
                          "from a SynthesizeMe run on the same benchmark, or set missing_persona='empty'")
