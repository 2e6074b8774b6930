"""Reading a module's syntax tree for what can bind or rebind its names (used by the static
config-key check of ``prb submission validate``, :mod:`~personalrewardbench.submissions.config_keys`).
No code runs: everything is read from :mod:`ast`."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

# names and attributes through which module code can rebind a module-level name at run time
DYNAMIC_NAMES = frozenset({"globals", "vars", "locals", "exec", "eval", "__import__", "__builtins__", "setattr",
                           "delattr"})
DYNAMIC_ATTRS = frozenset({"modules", "__dict__", "__setattr__", "f_globals", "__globals__", "import_module",
                           "getmodule"})


def scope_walk(body: list[ast.stmt]) -> Iterator[ast.AST]:
    """Every node that runs in the scope of ``body`` (not inside nested functions, lambdas or class
    bodies, whose names are their own; a nested class or function's *name* and decorators are here)."""
    stack: list[ast.AST] = list(reversed(body))
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            outer: list[ast.AST] = [*node.decorator_list]
            if isinstance(node, ast.ClassDef):
                outer += [*node.bases, *node.keywords]
            else:
                outer += [*node.args.defaults, *(d for d in node.args.kw_defaults if d is not None)]
            stack.extend(outer)
        elif isinstance(node, ast.Lambda):
            stack.extend(node.args.defaults)
        elif isinstance(node, ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp):
            # comprehension targets are its own; only a walrus inside binds in this scope
            stack.extend(n for n in ast.walk(node) if isinstance(n, ast.NamedExpr))
        else:
            stack.extend(ast.iter_child_nodes(node))


def bound_names(node: ast.AST) -> list[str]:
    """Names ``node`` binds (or deletes) in the scope it runs in; ``*`` for a star import."""
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
        return [node.id]
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.Import | ast.ImportFrom):
        return [a.asname or a.name.split(".")[0] for a in node.names]
    if isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and node.name:
        return [node.name]
    if isinstance(node, ast.MatchMapping) and node.rest:
        return [node.rest]
    return []


def dynamic_use(tree: ast.Module) -> str | None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in DYNAMIC_NAMES:
            return f"it uses {node.id} (line {node.lineno}), which can rebind names at run time"
        if isinstance(node, ast.Attribute) and node.attr in DYNAMIC_ATTRS:
            return f"it uses .{node.attr} (line {node.lineno}), which can rebind names at run time"
    return None


def targets(node: ast.AST) -> list[ast.expr]:
    """What an assignment, augmented assignment, ``for``/``with`` target or ``del`` writes to (tuples unpacked)."""
    if isinstance(node, ast.Assign):
        raw = list(node.targets)
    elif isinstance(node, ast.AugAssign | ast.AnnAssign | ast.For | ast.AsyncFor | ast.NamedExpr):
        raw = [node.target]
    elif isinstance(node, ast.Delete):
        raw = list(node.targets)
    elif isinstance(node, ast.With | ast.AsyncWith):
        raw = [i.optional_vars for i in node.items if i.optional_vars is not None]
    else:
        return []
    out: list[ast.expr] = []
    while raw:
        t = raw.pop()
        if isinstance(t, ast.Tuple | ast.List):
            raw.extend(t.elts)
        elif isinstance(t, ast.Starred):
            raw.append(t.value)
        else:
            out.append(t)
    return out


def self_import(tree: ast.Module, file: Path) -> str | None:
    """Why the module may import itself (and so rebind its own names through the module object), or None."""
    own = file.parent.name if file.name == "__init__.py" else file.stem
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names = [a.name for a in node.names]
            mod = node.module or ""
            if own in mod.split(".") or (node.level and not mod and own in names):
                return f"line {node.lineno} imports the module itself ({ast.unparse(node)[:80]})"
        elif isinstance(node, ast.Import) and any(own in a.name.split(".") for a in node.names):
            return f"line {node.lineno} imports the module itself ({ast.unparse(node)[:80]})"
    return None
