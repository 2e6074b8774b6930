"""Check a method's config values against the type hints of its constructor, before it runs.

A config reaches a method from JSON (``--config``) or TOML (``submission.toml``), so its values
are JSON values: numbers, strings, booleans, null, lists and objects. :func:`check_config_values`
compares each one with the annotation of the same-named ``__init__`` parameter (or dataclass
field, for methods that take ``**settings``) and raises one :class:`MethodError` naming the
method, the key, the value given and what is expected, e.g.::

    method embed-logreg: config C_grid = "abc" is not valid: expected a list of numbers
    (default [0.1, 1.0, 10.0])

Rules (JSON has no separate integer and float types on the wire, and TOML writes ``32`` for
``32.0``): ``float`` accepts whole numbers too, ``int`` accepts only whole numbers, ``bool``
only ``true``/``false`` (not 0/1), ``str`` and ``Path`` strings; ``X | None`` also ``null``;
``Literal[...]`` one of its values; ``list``/``tuple``/``Sequence``/``Iterable`` a JSON list whose
items match; ``dict``/``Mapping`` a JSON object whose values match. Annotations it cannot
resolve or does not know (``Any``, classes) accept anything: the constructor's own checks and the
harness's generic net (:func:`personalrewardbench.methods.load_method`) still apply.
"""

from __future__ import annotations

import collections.abc as cabc
import inspect
import json
import math
import types
import typing
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from personalrewardbench.errors import MethodError

_UNKNOWN = object()  # an annotation this module does not check


def _show(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def describe(tp: Any) -> str:
    """What ``tp`` expects, in words a config author reads ("a whole number", "a list of numbers")."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is type(None) or tp is None:
        return "null"
    if tp is bool:
        return "true or false"
    if tp is int:
        return "a whole number"
    if tp is float:
        return "a number"
    if tp is str or (isinstance(tp, type) and issubclass(tp, PurePath)):
        return "a string"
    if origin is typing.Literal:
        return "one of " + ", ".join(_show(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [describe(a) for a in args if a is not type(None)]
        text = " or ".join(dict.fromkeys(parts))
        return text + (" or null" if type(None) in args else "")
    if origin in (list, tuple, cabc.Sequence, cabc.Iterable, cabc.Collection, set, frozenset):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} items (" + ", ".join(describe(a) for a in args) + ")"
        inner = describe(args[0]) if args and _known(args[0]) else ""
        return "a list" + (f" of {_plural(inner)}" if inner else "")
    if origin in (dict, cabc.Mapping) or tp in (dict, cabc.Mapping):
        return "a JSON object (a table in TOML)"
    if tp in (list, tuple):
        return "a list"
    return "a value of type " + getattr(tp, "__name__", str(tp))


def _plural(text: str) -> str:
    for one, many in (("a whole number", "whole numbers"), ("a number", "numbers"), ("a string", "strings"),
                      ("true or false", "true/false values")):
        text = text.replace(one, many)
    return text


def _known(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp in (bool, int, float, str, type(None), None, list, tuple, dict):
        return True
    if isinstance(tp, type) and issubclass(tp, PurePath):
        return True
    if origin in (typing.Union, types.UnionType):
        return all(_known(a) for a in typing.get_args(tp))
    return origin in (typing.Literal, list, tuple, cabc.Sequence, cabc.Iterable, cabc.Collection, set, frozenset,
                      dict, cabc.Mapping) or tp is cabc.Mapping


def matches(value: Any, tp: Any) -> bool:
    """Whether the JSON value ``value`` is acceptable for annotation ``tp`` (see module doc).
    Annotations this module does not know accept anything."""
    if not _known(tp):
        return True
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is type(None) or tp is None:
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if tp is str or (isinstance(tp, type) and issubclass(tp, PurePath)):
        return isinstance(value, str | PurePath)
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, a) for a in args)
    if origin in (dict, cabc.Mapping) or tp in (dict, cabc.Mapping):
        if not isinstance(value, Mapping):
            return False
        return len(args) != 2 or all(matches(v, args[1]) for v in value.values())
    if not isinstance(value, list | tuple):
        return False
    if origin is tuple and args and args[-1] is not Ellipsis:
        return len(value) == len(args) and all(matches(v, a) for v, a in zip(value, args, strict=True))
    return not args or all(matches(v, args[0]) for v in value)


def _hints(obj: Any) -> dict[str, Any]:
    """Resolved annotations of a function or class; a name that cannot be resolved is left out."""
    try:
        return typing.get_type_hints(obj)
    except Exception:  # noqa: BLE001 - one unresolvable annotation must not hide the others
        pass
    raw = getattr(obj, "__annotations__", {}) or {}
    ns = getattr(inspect.getmodule(obj), "__dict__", {})
    out = {}
    for name, ann in raw.items():
        try:
            out[name] = eval(ann, ns) if isinstance(ann, str) else ann  # noqa: S307 - the method's own annotation
        except Exception:  # noqa: BLE001 - left unchecked
            continue
    return out


def config_annotations(cls: type) -> dict[str, tuple[Any, Any]]:
    """Key -> (annotation, default) for the config of method class ``cls``: its ``__init__``
    parameters, or, when ``__init__`` takes ``**kwargs`` and the class names a dataclass in
    ``settings_class``, that dataclass's fields."""
    import dataclasses

    out: dict[str, tuple[Any, Any]] = {}
    settings = getattr(cls, "settings_class", None)
    if settings is not None and dataclasses.is_dataclass(settings):
        hints = _hints(settings)
        for f in dataclasses.fields(settings):
            default = f.default if f.default is not dataclasses.MISSING else inspect.Parameter.empty
            out[f.name] = (hints.get(f.name, Any), default)
    init = cls.__init__
    hints = _hints(init)
    for name, p in inspect.signature(init).parameters.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        out[name] = (hints.get(name, Any), p.default)
    return out


def check_values(method: str, values: Mapping[str, Any], annotations: Mapping[str, tuple[Any, Any]]) -> None:
    """MethodError for the first value in ``values`` that does not match its annotation."""
    for key, value in values.items():
        if key not in annotations:
            continue
        tp, default = annotations[key]
        if matches(value, tp):
            continue
        hint = "" if default is inspect.Parameter.empty else f" (default {_show(default)})"
        raise MethodError(f"method {method}: config {key} = {_show(value)} is not valid: expected "
                          f"{describe(tp)}{hint}; fix the value in --config (or in the config of its submission.toml)")


def check_config_values(method: str, cls: type, values: Mapping[str, Any]) -> None:
    """Check ``values`` (a method's config) against the type hints of ``cls``'s constructor (or its
    ``settings_class``); MethodError naming the method, key, value and what is expected."""
    check_values(method, values, config_annotations(cls))
