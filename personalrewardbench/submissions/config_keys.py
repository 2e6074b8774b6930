"""Static check that a submission's config keys are parameters of its entry class's ``__init__``.

``prb submission validate`` runs no submission code, so this reads the entry module's syntax
tree (:mod:`ast`): the entry class's ``__init__`` (or, when the class defines none, that of a
base class defined in the same module). A config key that is not one of its parameters, or a
parameter without a default that no config sets, is a problem naming the key, the class and
the fix. The check stands aside (no problem) when it cannot know: ``__init__`` takes
``**kwargs``, or the parameters come from a class defined elsewhere (an imported base class
other than :class:`personalrewardbench.Method`, whose constructor takes no arguments).
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

METHOD_BASES = {"Method", "personalrewardbench.Method", "personalrewardbench.methods.Method"}


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _init_params(classes: Mapping[str, ast.ClassDef], name: str, seen: set[str]
                 ) -> tuple[list[str], list[str], int] | None:
    """(parameters, those without a default, line of ``__init__``) of class ``name``; None when
    unknown (``**kwargs``, or inherited from a class not defined in this module)."""
    if name in seen or name not in classes:
        return None
    seen.add(name)
    cls = classes[name]
    for item in cls.body:
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name == "__init__":
            a = item.args
            if a.kwarg is not None:
                return None
            positional = [*a.posonlyargs, *a.args][1:]  # without self
            defaults = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
            params = [p.arg for p in positional] + [p.arg for p in a.kwonlyargs]
            required = [p.arg for p, d in zip(positional, defaults, strict=True) if d is None]
            required += [p.arg for p, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if d is None]
            return params, required, item.lineno
    bases = [_dotted(b) for b in cls.bases]
    local = [b for b in bases if b in classes]
    if local:
        return _init_params(classes, local[0], seen)
    if all(b in METHOD_BASES or b == "object" for b in bases):
        return [], [], cls.lineno  # Method's constructor takes no arguments
    return None


def config_key_problems(module_file: Path, class_name: str,
                        configs: Mapping[str, tuple[Mapping[str, Any], Mapping[str, Any]]]) -> list[str]:
    """Problems with ``configs`` (``"[method].config"`` / ``"[variants.x].config"`` -> (the table's own
    keys, the constructor kwargs it yields: a variant's merged over ``[method].config``)) against
    ``class_name.__init__`` in ``module_file``, read statically.
    A module that cannot be read or parsed gives no problem here (the syntax check reports it)."""
    try:
        tree = ast.parse(module_file.read_bytes(), filename=str(module_file))
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    found = _init_params(classes, class_name, set())
    if found is None:
        return []
    params, required, line = found
    where = f"{class_name}.__init__ ({module_file.name}, line {line})"
    problems = []
    for table, (own, config) in configs.items():
        for key in own:
            if key not in params:
                close = difflib.get_close_matches(key, params, n=1)
                fix = f"did you mean {close[0]!r}? " if close else ""
                problems.append(f"{table} key {key!r} is not a parameter of {where}, which takes "
                                f"{', '.join(params) or 'no arguments'}; {fix}rename the key or add the parameter")
        missing = [p for p in required if p not in config]
        if missing:
            problems.append(f"{table}: {where} requires {', '.join(missing)} (no default); set "
                            f"{'it' if len(missing) == 1 else 'them'} in the config or give the parameter a default")
    return problems


def submission_config_problems(sub: Any, module_file: Path) -> list[str]:
    """:func:`config_key_problems` for a parsed submission (:class:`~.spec.Submission`): its
    ``[method].config`` and each ``[variants.<suffix>].config`` merged over it."""
    configs = {"[method].config": (sub.config, sub.config)} | {
        f"[variants.{k}].config": (v.config, {**sub.config, **v.config}) for k, v in sub.variants.items()}
    return config_key_problems(module_file, sub.entry_class, configs)
