"""Every `prb` verb's --help has a description and examples."""

from __future__ import annotations

from personalrewardbench.cli import build_parser
from personalrewardbench.cli_help import _children


def _verbs() -> dict[str, object]:
    out = {}
    for name, child in _children(build_parser()).items():
        out[name] = child
        out.update({f"{name} {s}": p for s, p in _children(child).items()})
    return out


def test_every_verb_has_a_description_and_examples() -> None:
    verbs = _verbs()
    assert {"run", "evaluate", "verify", "merge", "compare", "data build", "data stats", "data validate",
            "data export", "leaderboard build", "submission validate", "submission new",
            "submission score"} <= set(verbs)
    for name, parser in verbs.items():
        text = parser.format_help()
        assert parser.description, f"prb {name}: no description"
        assert "examples:" in text, f"prb {name} --help shows no examples"
        examples = text.split("examples:", 1)[1].strip().splitlines()
        assert examples and all(line.strip().startswith("prb ") for line in examples), (name, examples)
        # every example names this verb (so the examples are not copied from another one)
        assert all(line.strip().startswith(f"prb {name}") or name in ("data", "submission", "leaderboard")
                   for line in examples if not line.strip().startswith("prb leaderboard build")), (name, examples)
