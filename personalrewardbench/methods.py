"""The Method contract, capabilities, and the method registry.

Contract (batch first, like scikit-learn's fit/predict)::

    class MyMethod(Method):
        name = "my-method"
        capabilities = frozenset({"llm"})
        def __init__(self, temperature: float = 0.0): ...   # config only, JSON-serializable
        def fit(self, histories): ...                       # all users at once
        def predict(self, queries) -> list[float | None]:   # P(first preferred)
        def artifacts(self) -> dict[str, str]:              # e.g. user_id -> persona

Resources (LLM, seed, cache dir, device) come through :meth:`Method.setup`,
called by the harness before ``fit``; configuration comes through the
constructor, so ``get_config()`` can record it in results.

Prediction values: a float in [0, 1] is P(first response preferred); exactly
0.5 is a tie (scored wrong); ``None`` is a failed judgment (scored wrong and
counted as failed). NaN or values outside [0, 1] are errors.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from personalrewardbench.data.schema import Query, UserHistory
from personalrewardbench.errors import MethodError
from personalrewardbench.submissions.spec import read_submission

# Capabilities a method may declare.
CAPABILITIES = {
    "llm": "needs an LLM from the harness (env.llm)",
    "profile": "needs user profiles (demographics); not applicable where the dataset has none",
    "train-rm": "trains a reward model (uses env.device, env.cache_dir)",
    "pairwise": "judges the two responses jointly (not one score per response)",
    "personalized": "uses the user's own history",
    "artifacts": "produces per-user artifacts (e.g. personas)",
}


def _cache_root() -> Path:
    from personalrewardbench.cli_options import cache_root

    return cache_root()


@dataclass
class MethodEnv:
    """Resources the harness hands a method. Never carries labels of test pairs."""

    seed: int = 0
    llm: Any = None  # personalrewardbench.llm.base.LLM | None
    cache_dir: Path = field(default_factory=lambda: _cache_root())  # $PRB_CACHE_DIR or .prb-cache
    device: str = "cpu"
    show_progress: bool = True
    options: dict[str, Any] = field(default_factory=dict)  # free-form CLI extras (e.g. persona source)


class Method(ABC):
    name: ClassVar[str] = "method"
    capabilities: ClassVar[frozenset[str]] = frozenset()

    env: MethodEnv

    def setup(self, env: MethodEnv) -> None:
        """Receive resources. Subclasses that override call ``super().setup(env)``."""
        self.env = env

    def fit(self, histories: Sequence[UserHistory]) -> None:  # noqa: B027 - default: nothing to learn
        """Learn from all users' train/val pairs at once."""

    @abstractmethod
    def predict(self, queries: Sequence[Query]) -> Sequence[float | None]:
        """One value per query, in the order given: P(first preferred), 0.5 tie, None failed."""

    def artifacts(self) -> Mapping[str, str]:
        return {}

    def usage(self) -> Mapping[str, Any]:
        """Cost counters beyond the LLM's own usage (e.g. failed judgments per user)."""
        return {}

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, read back from same-named attributes (sklearn style)."""
        sig = inspect.signature(type(self).__init__)
        out: dict[str, Any] = {}
        for pname, p in sig.parameters.items():
            if pname == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            out[pname] = getattr(self, pname, p.default)
        return out


# --------------------------------------------------------------------------------------------
# Registry: find methods by name (baselines/ and submissions/ folders, entry points),
# by ``module:Class``, or by a folder path holding a submission.toml.
# --------------------------------------------------------------------------------------------

ENTRY_POINT_GROUP = "personalrewardbench.methods"
METHOD_DIRS_ENV = "PRB_METHOD_DIRS"
SUBMISSION_FILE = "submission.toml"


@dataclass(frozen=True)
class MethodInfo:
    """Where a registered method comes from and how to build it."""

    name: str  # full name, variant suffix included
    source: str  # folder path, "entry-point:module:Class" or "module:Class"
    entry: str  # "module:Class" (module relative to ``folder`` when there is one)
    config: Mapping[str, Any] = field(default_factory=dict)
    folder: Path | None = None
    tier: str = "submitted"  # "reproduced" for baselines/, "submitted" otherwise
    requirements: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""


def method_dirs() -> list[Path]:
    """Folders whose sub-folders hold methods: ``$PRB_METHOD_DIRS`` (os.pathsep-separated),
    else the repository's ``baselines/`` and ``submissions/`` next to the package."""
    import os

    env = os.environ.get(METHOD_DIRS_ENV)
    if env:
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    root = Path(__file__).resolve().parent.parent
    return [root / "baselines", root / "submissions"]


def _display_path(folder: Path) -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        return str(folder.relative_to(root))
    except ValueError:
        return str(folder)


def read_folder_methods(folder: Path | str) -> list[MethodInfo]:
    """The method (and its ``[variants.<suffix>]``) declared by ``folder/submission.toml``,
    parsed and checked by :func:`personalrewardbench.submissions.spec.read_submission`."""
    folder = Path(folder).resolve()
    sub = read_submission(folder)
    tier = "reproduced" if folder.parent.name == "baselines" else "submitted"
    requirements = {"llm": sub.requirements.llm, "reward_model": sub.requirements.reward_model,
                    "gpu": sub.requirements.gpu, "datasets": list(sub.requirements.datasets)}
    out = []
    for name in sub.method_names():
        var = sub.variants.get(name[len(sub.name) + 1:]) if name != sub.name else None
        out.append(MethodInfo(name=name, source=_display_path(folder), entry=sub.entry, config=sub.config_for(name),
                              folder=folder, tier=tier, requirements=requirements,
                              description=(var.description if var and var.description else sub.description)))
    return out


def _registry() -> tuple[dict[str, MethodInfo], dict[str, MethodError]]:
    """Known methods, plus the error of each method folder that could not be read (by folder name)."""
    from importlib.metadata import entry_points

    found: dict[str, MethodInfo] = {}
    broken: dict[str, MethodError] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found[ep.name] = MethodInfo(name=ep.name, source=f"entry-point:{ep.value}", entry=ep.value)
    for base in method_dirs():
        if not base.is_dir():
            continue
        for folder in sorted(base.iterdir()):
            if not (folder / SUBMISSION_FILE).is_file():
                continue
            try:
                infos = read_folder_methods(folder)
            except MethodError as exc:
                broken[folder.name] = exc
                continue
            # the first folder keeps a name (baselines/ before submissions/): a submission never takes the
            # name of a baseline the harness runs in-process, nor another folder's; folders win over entry points
            taken = [(i.name, found[i.name]) for i in infos if i.name in found and found[i.name].folder is not None]
            if taken:
                name, owner = taken[0]
                broken[folder.name] = MethodError(
                    f"{folder / SUBMISSION_FILE}: method name {name!r} is already taken by {owner.source}; rename "
                    "the submission (or the variant) so that every name is new")
                continue
            for info in infos:
                found[info.name] = info
    return found, broken


def method_folders() -> dict[str, Path]:
    """Method name -> the folder that registers it (first folder wins, see :func:`method_dirs`)."""
    return {name: info.folder for name, info in _registry()[0].items() if info.folder is not None}


def list_methods() -> dict[str, str]:
    """Registered method names -> where each comes from."""
    return {name: info.source for name, info in sorted(_registry()[0].items())}


def _import_folder_package(folder: Path) -> str:
    """Import ``folder`` as a package with a unique name; return that name."""
    import hashlib
    import importlib.machinery
    import importlib.util
    import re
    import sys

    slug = re.sub(r"\W", "_", folder.name)
    pkg = f"_prb_method_{slug}_{hashlib.sha256(str(folder).encode()).hexdigest()[:10]}"
    if pkg in sys.modules:
        return pkg
    init = folder / "__init__.py"
    if init.exists():
        spec = importlib.util.spec_from_file_location(pkg, init, submodule_search_locations=[str(folder)])
    else:
        spec = importlib.machinery.ModuleSpec(pkg, None, is_package=True)
        spec.submodule_search_locations = [str(folder)]
    if spec is None:  # pragma: no cover - defensive
        raise MethodError(f"{folder}: cannot be imported as a package")
    module = importlib.util.module_from_spec(spec)
    sys.modules[pkg] = module
    try:
        if spec.loader is not None:
            spec.loader.exec_module(module)
    except Exception:
        del sys.modules[pkg]
        raise
    return pkg


def _resolve_class(entry: str, folder: Path | None = None) -> type[Method]:
    import importlib

    mod_name, _, cls_name = entry.partition(":")
    where = f"{folder}/{SUBMISSION_FILE}" if folder else entry
    if not mod_name or not cls_name:
        raise MethodError(f"{where}: entry {entry!r} must be \"module:Class\"")
    full = f"{_import_folder_package(folder)}.{mod_name}" if folder else mod_name
    try:
        module = importlib.import_module(full)
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == full or full.startswith(exc.name + ".")):
            raise MethodError(f"{where}: module {mod_name!r} not found"
                              + (f" in {folder}" if folder else "; check the module path and that it is installed")) from exc
        raise
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise MethodError(f"{where}: module {mod_name!r} has no class {cls_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise MethodError(f"{where}: {entry} is not a subclass of personalrewardbench.methods.Method")
    return cls


def resolve_method(spec: str) -> MethodInfo:
    """Find the :class:`MethodInfo` for a name, a folder path or ``module:Class``."""
    path = Path(spec).expanduser()
    if (path / SUBMISSION_FILE).is_file():
        infos = read_folder_methods(path)
        return infos[0]
    if path.is_dir() or spec.endswith(("/", "\\")):
        raise MethodError(f"{spec}: folder has no {SUBMISSION_FILE}; see `prb submission new` for a template")
    registry, broken = _registry()
    if spec in registry:
        return registry[spec]
    if spec in broken:
        raise broken[spec]
    if ":" in spec:
        return MethodInfo(name=spec, source=spec, entry=spec)
    import difflib

    close = difflib.get_close_matches(spec, list(registry), n=5, cutoff=0.5)
    hint = f"did you mean: {', '.join(close)}?" if close else f"known methods: {', '.join(sorted(registry)) or 'none'}"
    raise MethodError(f"unknown method {spec!r}; {hint} (`prb evaluate --list-methods` lists them; "
                      f"also accepted: module:Class or a folder with {SUBMISSION_FILE})")


def config_keys(cls: type) -> list[str] | None:
    """The constructor arguments a method class accepts (None: it takes ``**kwargs`` and names no
    ``settings_class`` dataclass whose fields are its settings)."""
    import dataclasses

    params = [p for n, p in inspect.signature(cls).parameters.items() if n != "self"]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        settings = getattr(cls, "settings_class", None)
        if settings is not None and dataclasses.is_dataclass(settings):
            return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)] \
                + [f.name for f in dataclasses.fields(settings)]
        return None
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def _positional_only_note(cls: type) -> str:
    """`` (positional-only, not settable by name: a, b)`` for the constructor's positional-only
    parameters (before ``/``), else ``""``."""
    names = [n for n, p in inspect.signature(cls).parameters.items() if p.kind is p.POSITIONAL_ONLY and n != "self"]
    return f" (positional-only, which a config cannot set by name: {', '.join(names)})" if names else ""


def check_config(name: str, cls: type, kwargs: Mapping[str, Any]) -> None:
    """MethodError naming every unknown key (with the valid ones) or the missing required ones."""
    valid = config_keys(cls)
    if valid is not None:
        unknown = sorted(set(kwargs) - set(valid))
        if unknown:
            import difflib

            hints = [f"{k!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(k, valid, n=1))
                     else repr(k) for k in unknown]
            raise MethodError(f"method {name}: unknown config key{'s' if len(unknown) > 1 else ''} "
                              f"{', '.join(hints)}; valid keys: {', '.join(valid) or 'none'}{_positional_only_note(cls)}"
                              + ("" if valid or _positional_only_note(cls) else " (it takes no config)"))
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as exc:
        raise MethodError(f"method {name}: bad config {dict(kwargs)!r} for {cls.__name__}: {exc}; "
                          f"valid keys: {', '.join(valid or [])}") from exc
    from personalrewardbench.config_values import check_config_values

    check_config_values(name, cls, kwargs)


def load_method(spec: str | MethodInfo, config: Mapping[str, Any] | None = None) -> Method:
    """Build a method: ``spec`` is a registered name, ``module:Class`` or a folder path.

    ``config`` is merged over the registered config and passed to the constructor.
    The instance gets ``name`` (the full registered name, variant included) and
    ``method_info`` (a :class:`MethodInfo`). Raises MethodError for an unknown method or config key,
    a config value that does not match the constructor's type hints
    (:mod:`personalrewardbench.config_values`), and any ValueError/TypeError the constructor raises
    ("bad setting for method X: ...").
    """
    info = spec if isinstance(spec, MethodInfo) else resolve_method(spec)
    cls = _resolve_class(info.entry, info.folder)
    kwargs = {**info.config, **(config or {})}
    check_config(info.name, cls, kwargs)
    try:
        method = cls(**kwargs)
    except (ValueError, TypeError) as exc:  # a value the type hints allow but the constructor refuses
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise MethodError(f"bad setting for method {info.name}: {text} (config {_show_config(kwargs)}); fix the "
                          "value in --config or in the config of its submission.toml") from exc
    if ":" not in info.name:
        method.name = info.name  # type: ignore[misc] - instance name carries the variant
    method.method_info = info  # type: ignore[attr-defined]
    return method


def _show_config(kwargs: Mapping[str, Any]) -> str:
    import json

    try:
        text = json.dumps(dict(kwargs), sort_keys=True)
    except (TypeError, ValueError):
        text = repr(dict(kwargs))
    return text if len(text) <= 200 else text[:197] + "..."
