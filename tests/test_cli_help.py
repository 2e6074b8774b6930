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


def test_every_dataset_option_lists_every_accepted_name() -> None:
    from personalrewardbench.data.loader import KNOWN_NAMES

    verbs = _verbs()
    for name in ("evaluate", "run", "data stats", "submission score"):
        action = next(a for a in verbs[name]._actions if "--dataset" in a.option_strings)
        missing = [n for n in KNOWN_NAMES if n not in (action.help or "")]
        assert not missing, f"prb {name} --dataset help leaves out {missing}"


def test_bootstrap_accepts_zero_and_refuses_negatives() -> None:
    import argparse

    import pytest

    from personalrewardbench.cli_options import bootstrap_count

    assert bootstrap_count("0") == 0 and bootstrap_count("250") == 250
    for bad in ("-5", "many", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            bootstrap_count(bad)
