"""Config values are checked against the type hints of each method's constructor before it runs:
a wrong value is one MethodError naming the method, the key, the value and what is expected."""

from __future__ import annotations

from typing import Literal

import pytest

from personalrewardbench.config_values import config_annotations, matches
from personalrewardbench.methods import Method, MethodError, _resolve_class, list_methods, load_method, resolve_method

# (method, key, bad value, words the message must hold): every baseline with a config
CASES = [
    ("embed-logreg", "C_grid", "abc", 'C_grid = "abc" is not valid: expected a list of numbers'),
    ("embed-logreg", "lam_grid", [1, "x"], "expected a list of numbers"),
    ("embed-logreg", "context_chars", "2000", "expected a whole number"),
    ("embed-logreg", "use_context", "yes", "expected true or false"),
    ("bt-rm", "epochs", "two", 'epochs = "two" is not valid: expected a whole number (default 2)'),
    ("bt-rm", "lr", "fast", "expected a number"),
    ("bt-rm", "bf16", 1, "expected true or false"),
    ("bt-rm", "persona_method_config", [1], "expected a JSON object"),
    ("vanilla-rm", "max_length", 1.5, "expected a whole number"),
    ("vanilla-rm", "model", 3, "expected a string or null"),
    ("length", "unit", 3, "expected a string"),
    ("default-judge", "max_reasoning_tokens", "many", "expected a whole number"),
    ("default-judge", "retry_temperature", "hot", "expected a number or null"),
    ("memory", "max_history", "2", "expected a whole number or null"),
    ("memory", "include_val", "no", "expected true or false"),
    ("demographics", "profile", 7, "expected a string"),
    ("synthesizeme", "max_tries", "x", "expected a whole number (default 4)"),
    ("synthesizeme", "use_persona", "true", "expected true or false"),
    ("synthesizeme", "stop_at_score", "80", "expected a number"),
    ("synthesizeme", "persona_instruction", 5, "expected a string or null"),
    ("embed-direction", "prior_weight", "high", "expected a number"),
]


@pytest.mark.parametrize("method,key,value,words", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_a_wrong_value_names_method_key_value_and_expectation(method, key, value, words) -> None:
    with pytest.raises(MethodError) as exc:
        load_method(method, {key: value})
    text = str(exc.value)
    assert text.startswith(f"method {method}: config {key} = ") and words in text, text


def test_every_key_of_every_registered_method_is_checked() -> None:
    """A JSON object is a valid value only for a key annotated as a mapping; every other key of every
    registered method (baselines, variants, submissions) refuses it, naming the key."""
    mapping_keys = {"persona_method_config"}  # bt-rm's (annotated dict[str, Any] | None)
    checked = 0
    for name in list_methods():
        info = resolve_method(name)
        cls = _resolve_class(info.entry, info.folder)
        for key in config_annotations(cls):
            if key in mapping_keys:
                continue
            with pytest.raises(MethodError, match=rf"config {key} = \{{\"not\": \"a value\"\}}"):
                load_method(name, {key: {"not": "a value"}})
            checked += 1
    assert checked > 100  # every baseline and variant contributes its keys


class Picky(Method):
    """A constructor with its own checks, raising ValueError as plain Python code does."""

    name = "picky"

    def __init__(self, ratio: float = 0.5, label=None) -> None:  # noqa: ANN001 - unannotated on purpose
        if not 0 < ratio < 1:
            raise ValueError(f"ratio must be between 0 and 1, got {ratio}")
        self.ratio, self.label = ratio, label

    def predict(self, queries):
        return [0.5] * len(queries)


def test_a_constructor_error_is_a_bad_setting_not_a_bug() -> None:
    with pytest.raises(MethodError) as exc:
        load_method(f"{__name__}:Picky", {"ratio": 3})
    text = str(exc.value)
    assert text.startswith(f"bad setting for method {__name__}:Picky: ratio must be between 0 and 1, got 3")
    assert '{"ratio": 3}' in text and "bug" not in text
    # an unannotated parameter takes any value
    assert load_method(f"{__name__}:Picky", {"label": {"any": ["thing"]}}).label == {"any": ["thing"]}


def test_matching_rules() -> None:
    assert matches(3, float) and matches(3.5, float) and not matches(True, float) and not matches("3", float)
    assert matches(3, int) and not matches(3.0, int) and not matches(False, int)
    assert matches(True, bool) and not matches(1, bool)
    assert matches(None, int | None) and matches("a", Literal["a", "b"]) and not matches("c", Literal["a", "b"])
    assert matches([1, 2.5], list[float]) and matches((1, 2), tuple[int, ...]) and not matches([1, "x"], list[int])
    assert matches([1, "x"], tuple[int, str]) and not matches([1], tuple[int, str])
    assert matches({"a": 1}, dict[str, int]) and not matches({"a": "b"}, dict[str, int]) and not matches([], dict)
