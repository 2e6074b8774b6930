"""Static checks of a submission's entry: its module file, its class, and its config keys.

``prb submission validate`` runs no submission code, so this reads syntax trees (:mod:`ast`):

1. The entry module is resolved exactly as the harness will import it: the folder is imported
   as a package, so ``adapter`` is found by the standard library's own path finder
   (:class:`importlib.machinery.FileFinder`) in the folder, a package ``adapter/__init__.py``
   before a module ``adapter.py``, a compiled extension before Python source.
2. The entry class counts only as a plain top-level ``class`` statement of that module, the
   only binding of its name anywhere at module level (no assignment, import, definition inside
   ``if``/``try``, second definition, ``global`` rebinding, ``del``, and no use of
   ``globals()``, ``sys.modules`` or similar that could rebind it at run time).
3. Its constructor parameters come from its own ``__init__``, or that of a single base class
   defined the same way in that module, or :class:`personalrewardbench.Method` (no arguments).

Each config key must then be a parameter that can be passed by name (not positional-only),
and every parameter without a default must be set. Where the answer cannot be read exactly
(the class is decorated, e.g. ``@dataclass``, has a metaclass, inherits ``__init__`` from a
class defined elsewhere, takes ``**kwargs``, is not a plain top-level class, or the module is
compiled), the check stands aside with a *note* saying so: the keys are then checked when the
run starts (:func:`personalrewardbench.methods.check_config`), never refused here.
"""

from __future__ import annotations

import ast
import difflib
import importlib.machinery as machinery
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from personalrewardbench.submissions.name_binding import bound_names, dynamic_use, scope_walk, self_import, targets

PRB_MODULES = ("personalrewardbench", "personalrewardbench.methods")
LOADERS = [(machinery.ExtensionFileLoader, machinery.EXTENSION_SUFFIXES),
           (machinery.SourceFileLoader, machinery.SOURCE_SUFFIXES),
           (machinery.SourcelessFileLoader, machinery.BYTECODE_SUFFIXES)]  # the order of Python's own path hook
CLASS_DUNDERS = ("__new__", "__signature__", "__init_subclass__")


class Unreadable(Exception):
    """The constructor's parameters cannot be read exactly from source; the message says why."""


class Missing(Exception):
    """Nothing in the module can bind the entry class's name (no binding of it, no star import, no
    module ``__getattr__``, nothing dynamic): the import at run time would fail."""


def resolve_entry_module(folder: Path, module: str) -> tuple[Path | None, bool]:
    """The file the harness imports for entry module ``module`` (dotted) from ``folder``, and
    whether it is Python source (False: a compiled extension or bytecode, or a namespace
    package with no file). ``(None, False)`` when nothing is found. Uses the standard library's
    :class:`importlib.machinery.FileFinder` with the loaders of Python's default path hook, so a
    package (``adapter/__init__.py``) wins over ``adapter.py`` exactly as at import time."""
    locations, fullname, spec = [str(folder)], "_prb_entry", None
    for part in module.split("."):
        fullname += f".{part}"
        spec = next((s for loc in locations
                     if (s := machinery.FileFinder(loc, *LOADERS).find_spec(fullname)) is not None), None)
        if spec is None:
            return None, False
        locations = list(spec.submodule_search_locations or [])
    if spec is None or spec.origin is None or spec.loader is None:  # a namespace package: no file
        return (None, False) if spec is None else (Path(locations[0]) if locations else None, False)
    return Path(spec.origin), isinstance(spec.loader, machinery.SourceFileLoader)


class ModuleView:
    """What a module's source says, statically, about its top-level names."""

    def __init__(self, tree: ast.Module, file_name: str) -> None:
        self.file_name = file_name
        self.bindings: dict[str, list[ast.AST]] = {}
        for node in scope_walk(tree.body):
            for name in bound_names(node):
                self.bindings.setdefault(name, []).append(node)
        self.globals_declared = {n for node in ast.walk(tree) if isinstance(node, ast.Global) for n in node.names}
        self.top_classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
        self.plain = {id(n) for n in tree.body if isinstance(n, ast.ClassDef)}
        self.dynamic = dynamic_use(tree) or self_import(tree, Path(file_name))
        # (object written to, attribute, line) of every attribute assignment or deletion anywhere in the module
        self.attr_writes = [(ast.unparse(t.value), t.attr, t.lineno) for node in ast.walk(tree)
                            for t in targets(node) if isinstance(t, ast.Attribute)]

    def rewritten(self, name: str) -> str | None:
        """Why class ``name`` may change after its statement: an attribute of it (``name.__init__ = ...``)
        or an attribute named like it on another object (``module.name = ...``) is assigned or deleted."""
        for obj, attr, line in self.attr_writes:
            if obj == name or obj.startswith(f"{name}.") or attr == name:
                return f"line {line} assigns {obj}.{attr}, which can change {name} or what its name refers to"
        return None

    def plain_class(self, name: str) -> ast.ClassDef:
        """The top-level ``class name`` statement, when it is the name's only module-level binding."""
        found = self.bindings.get(name, [])
        where = name
        if "*" in self.bindings:
            raise Unreadable(f"{self.file_name} has a star import ('from ... import *'), which may bind {name}")
        if not found:
            close = difflib.get_close_matches(name, sorted(self.top_classes), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            if not self.dynamic and "__getattr__" not in self.bindings and name not in self.globals_declared:
                raise Missing(f"{self.file_name} defines no {name!r}{hint}, and nothing in it can create that name; "
                              "fix the class name in [method].entry or in the module")
            raise Unreadable(f"{self.file_name} has no top-level 'class {name}'{hint}; if the module creates it "
                             "some other way, the run will find it")
        lines = ", ".join(str(getattr(n, "lineno", "?")) for n in found)
        if len(found) > 1:
            raise Unreadable(f"{where} is bound more than once at module level (lines {lines})")
        node = found[0]
        if not (isinstance(node, ast.ClassDef) and id(node) in self.plain):
            raise Unreadable(f"{where} is not a plain top-level class statement (line {lines}: it is bound by an "
                             "assignment, import, definition inside if/try/with, or similar)")
        if name in self.globals_declared:
            raise Unreadable(f"{where} is declared global in a function, which can rebind it")
        if self.dynamic:
            raise Unreadable(f"{self.file_name}: {self.dynamic}")
        why = self.rewritten(name)
        if why:
            raise Unreadable(why)
        return node

    def is_harness_class(self, base: ast.expr) -> bool:
        """True when ``base`` is a name imported once, absolutely, from a ``personalrewardbench`` module
        (the harness's own classes, e.g. ``LLMJudgeMethod``)."""
        if not isinstance(base, ast.Name):
            return False
        binds = self.bindings.get(base.id, [])
        return (len(binds) == 1 and isinstance(binds[0], ast.ImportFrom) and binds[0].level == 0
                and (binds[0].module or "").split(".")[0] == "personalrewardbench"
                and any((a.asname or a.name) == base.id for a in binds[0].names))

    def is_method_base(self, base: ast.expr) -> bool:
        """True when ``base`` is :class:`personalrewardbench.Method`, imported once from the package."""
        if isinstance(base, ast.Name):
            binds = self.bindings.get(base.id, [])
            return (len(binds) == 1 and isinstance(binds[0], ast.ImportFrom) and binds[0].level == 0
                    and binds[0].module in PRB_MODULES
                    and any(a.name == "Method" and (a.asname or a.name) == base.id for a in binds[0].names))
        if isinstance(base, ast.Attribute) and base.attr == "Method" and isinstance(base.value, ast.Name):
            binds = self.bindings.get(base.value.id, [])
            return (len(binds) == 1 and isinstance(binds[0], ast.Import)
                    and any(a.name in PRB_MODULES and (a.asname or a.name) == base.value.id for a in binds[0].names))
        return False


def _class_scope_bindings(cls: ast.ClassDef) -> dict[str, list[ast.AST]]:
    out: dict[str, list[ast.AST]] = {}
    for node in scope_walk(cls.body):
        for name in bound_names(node):
            out.setdefault(name, []).append(node)
    return out


def _plain_bases(view: ModuleView, name: str, cls: ast.ClassDef, seen: frozenset[str]) -> list[str]:
    """The base classes of ``cls`` other than Method and object, each checked as a plain class of this
    module (recursively: a base's own decorators, metaclass, ``__new__`` or bases from elsewhere change
    how ``name`` is built too, whether or not ``name`` has its own ``__init__``)."""
    bases = [b for b in cls.bases if not (isinstance(b, ast.Name) and b.id == "object")]
    if any(isinstance(b, ast.Starred) for b in bases):
        raise Unreadable(f"{name} takes its base classes from a starred expression")
    out = []
    for base in bases:
        if view.is_method_base(base):
            continue
        if view.is_harness_class(base):  # the harness's own code: no metaclass, no __new__
            why = view.rewritten(base.id)
            if why:
                raise Unreadable(why)
            out.append(base.id)
            continue
        binds = view.bindings.get(base.id, []) if isinstance(base, ast.Name) else []
        if not (isinstance(base, ast.Name) and len(binds) == 1 and isinstance(binds[0], ast.ClassDef)):
            raise Unreadable(f"{name} has the base class {ast.unparse(base)[:60]}, which is not a plain class "
                             f"defined in {view.file_name} (it may change how {name} is constructed)")
        try:
            _check_class(view, base.id, seen | {name})
        except Unreadable as exc:
            raise Unreadable(f"{name} inherits from {base.id}: {exc}") from None
        out.append(base.id)
    return out


def _check_class(view: ModuleView, name: str, seen: frozenset[str]) -> tuple[ast.ClassDef, dict, list[str]]:
    """(class statement, its scope's bindings, its plain bases) of class ``name``, when nothing in it or its
    bases can change how it is constructed; else :class:`Unreadable`."""
    if name in seen:
        raise Unreadable(f"{name} inherits from itself")
    cls = view.plain_class(name)
    if cls.decorator_list:
        raise Unreadable(f"{name} is decorated (line {cls.decorator_list[0].lineno}: "
                         f"@{ast.unparse(cls.decorator_list[0])}), which may generate or replace its __init__")
    if cls.keywords:
        raise Unreadable(f"{name} has class keywords ({ast.unparse(cls.keywords[0])}), e.g. a metaclass, which may "
                         "change how it is constructed")
    scope = _class_scope_bindings(cls)
    for dunder in CLASS_DUNDERS:
        if dunder in scope:
            raise Unreadable(f"{name} defines {dunder}, which may change how it is constructed")
    return cls, scope, _plain_bases(view, name, cls, seen)


def init_of(view: ModuleView, name: str, seen: frozenset[str] = frozenset()) -> tuple[ast.arguments | None, int]:
    """(arguments of the ``__init__`` that builds class ``name``, its line); ``None`` arguments: the
    class takes no constructor arguments (it reaches :class:`~personalrewardbench.Method`).
    Raises :class:`Unreadable` where that cannot be read exactly: the class or any base is not a
    plain class of this module (or Method), or is decorated, has a metaclass or ``__new__``."""
    cls, scope, bases = _check_class(view, name, seen)
    inits = scope.get("__init__", [])
    if inits:
        node = inits[0]
        if len(inits) > 1 or not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or node not in cls.body:
            raise Unreadable(f"{name}.__init__ is not one plain def in the class body")
        if node.decorator_list:
            raise Unreadable(f"{name}.__init__ is decorated, which may change its parameters")
        if node.args.kwarg is not None:
            raise Unreadable(f"{name}.__init__ takes **{node.args.kwarg.arg}, so any key may be valid")
        return node.args, node.lineno
    if not bases:
        return None, cls.lineno
    if len(bases) > 1:
        raise Unreadable(f"{name} has several base classes and no __init__ of its own")
    if view.is_harness_class(ast.Name(bases[0])):
        raise Unreadable(f"{name} inherits __init__ from the harness class {bases[0]}, read only when the run starts")
    try:
        return init_of(view, bases[0], seen | {name})
    except Unreadable as exc:
        raise Unreadable(f"{name} inherits __init__ from {bases[0]}: {exc}") from None


def _param_problems(where: str, args: ast.arguments | None,
                    configs: Mapping[str, tuple[Mapping[str, Any], Mapping[str, Any]]]) -> list[str]:
    pairs: list[tuple[ast.arg, bool]] = []  # (parameter, has a default), self excluded
    n_posonly = 0
    kwonly: list[tuple[ast.arg, bool]] = []
    if args is not None:
        every = [*args.posonlyargs, *args.args]
        pairs = list(zip(every, [False] * (len(every) - len(args.defaults)) + [True] * len(args.defaults),
                         strict=True))[1:]
        n_posonly = max(len(args.posonlyargs) - 1, 0)
        kwonly = [(a, d is not None) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)]
    posonly, named = pairs[:n_posonly], pairs[n_posonly:] + kwonly
    params = [a.arg for a, _ in named]
    required = [a.arg for a, d in named if not d]
    takes = ", ".join(params) or "no arguments by name"
    problems = []
    needed_posonly = [a.arg for a, d in posonly if not d]
    if needed_posonly:
        problems.append(f"{where} has positional-only parameter(s) without a default ({', '.join(needed_posonly)}), "
                        "which no config can set; give them defaults or remove the '/'")
    posonly_names = {a.arg for a, _ in posonly}
    for table, (own, config) in configs.items():
        for key in own:
            if key in params:
                continue
            if key in posonly_names:
                problems.append(f"{table} key {key!r} names a positional-only parameter of {where} (before '/'), "
                                "which cannot be set by name; remove the '/' or the key")
                continue
            close = difflib.get_close_matches(key, params, n=1)
            fix = f"did you mean {close[0]!r}? " if close else ""
            problems.append(f"{table} key {key!r} is not a parameter of {where}, which takes {takes}; "
                            f"{fix}rename the key or add the parameter")
        missing = [p for p in required if p not in config]
        if missing:
            problems.append(f"{table}: {where} requires {', '.join(missing)} (no default); set "
                            f"{'it' if len(missing) == 1 else 'them'} in the config or give the parameter a default")
    return problems


def config_key_problems(module_file: Path, class_name: str,
                        configs: Mapping[str, tuple[Mapping[str, Any], Mapping[str, Any]]],
                        display: str | None = None) -> tuple[list[str], str | None]:
    """(problems, reason the keys cannot be checked statically or None) for ``configs``
    (``"[method].config"`` / ``"[variants.x].config"`` -> (the table's own keys, the constructor kwargs
    it yields: a variant's merged over ``[method].config``)) against ``class_name`` in ``module_file``
    (named ``display`` in messages, by default its file name).
    A module that cannot be read or parsed gives neither (the syntax check reports it)."""
    try:
        tree = ast.parse(module_file.read_bytes(), filename=str(module_file))
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
        return [], None
    try:
        display = display or module_file.name
        args, line = init_of(ModuleView(tree, display), class_name)
    except Unreadable as exc:
        return [], str(exc)
    except Missing as exc:
        return [f"[method].entry: {exc}"], None
    where = f"{class_name}.__init__ ({display}, line {line})" if args is not None else \
        f"{class_name} ({display}, line {line}; it inherits Method's constructor)"
    return _param_problems(where, args, configs), None


def _package_code(folder: Path, module: str, found: Path) -> str | None:
    """The first package ``__init__.py`` that runs before the entry module is imported and holds code
    (anything but a docstring and ``pass``): the folder's own (it is imported as a package) and those of
    the packages on the entry's dotted path. None when there is none."""
    parts = module.split(".")
    for depth in range(len(parts)):
        init = folder.joinpath(*parts[:depth], "__init__.py")
        if init == found or not init.is_file() or init.is_symlink():
            continue
        try:
            body = ast.parse(init.read_bytes()).body
        except (SyntaxError, ValueError, RecursionError, MemoryError, OSError):
            return init.relative_to(folder).as_posix()
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]
        if any(not isinstance(n, ast.Pass) for n in body):
            return init.relative_to(folder).as_posix()
    return None


def entry_report(sub: Any, listed: list[str] | None = None, *, check_keys: bool = True
                 ) -> tuple[list[str], list[str]]:
    """(problems, notes) for the entry of a parsed submission (:class:`~.spec.Submission`): its
    module resolved as the harness imports it, its class and the config keys of ``[method].config``
    and each ``[variants.<suffix>].config`` (merged over it). ``listed``: the folder's files as
    :func:`~.listing.list_folder` gives them (what the sandbox's snapshot holds). ``check_keys=False``:
    the configs are unusable (already reported), so only the module and class are checked."""
    folder = sub.folder.resolve()
    found, is_source = resolve_entry_module(folder, sub.entry_module)
    entry = f"[method].entry {sub.entry!r}"
    if found is None:
        want = Path(*sub.entry_module.split(".")).with_suffix(".py")
        return [f"{entry}: module file {want} not found in {folder}; put the adapter code in the folder or fix "
                "the entry"], []
    rel = found.relative_to(folder).as_posix() if found.is_relative_to(folder) else str(found)
    if listed is not None and found.is_file() and rel not in listed:
        return [f"{entry}: the module resolves to {rel}, which is not part of the submission (skipped folders: "
                "results/, __pycache__, .git); move the code"], []
    if not is_source:
        what = "a namespace package (a folder with no __init__.py)" if found.is_dir() else "compiled, not Python source"
        return [], [f"{entry}: class {sub.entry_class} not checked statically: {rel} is {what}; its config keys are "
                    "checked when the run starts"]
    runs_first = _package_code(folder, sub.entry_module, found)
    if runs_first:
        return [], [f"{entry}: class {sub.entry_class} in {rel} cannot be checked statically: {runs_first} runs "
                    f"before {rel} and may change it; its config keys are checked when the run starts"]
    configs = {"[method].config": (sub.config, sub.config)} | {
        f"[variants.{k}].config": (v.config, {**sub.config, **v.config}) for k, v in sub.variants.items()}
    if not check_keys:
        configs = {}
    problems, reason = config_key_problems(found, sub.entry_class, configs, rel)
    notes = [] if reason is None else [f"{entry}: class {sub.entry_class} in {rel} cannot be checked statically: "
                                       f"{reason}; its config keys are checked when the run starts"]
    return problems, notes
