"""Which methods `prb run` runs, looked up by name before any work starts: whether a method trains a
network or calls the LLM (the CPU plan runs those on fewer users; the LLM is started once, up front),
and one error naming every unknown ``--methods`` name."""

from __future__ import annotations

from personalrewardbench.cpu_plan import HEAVY_CAPABILITIES


def _capabilities(name: str) -> frozenset[str]:
    from personalrewardbench.methods import MethodError, _resolve_class, resolve_method

    try:
        info = resolve_method(name)
        return frozenset(getattr(_resolve_class(info.entry, info.folder), "capabilities", ()))
    except (MethodError, ImportError):  # reported when the method is built
        return frozenset()


def is_heavy(name: str) -> bool:
    """Whether ``name`` trains a network or calls the LLM (capabilities ``train-rm`` or ``llm``)."""
    return bool(_capabilities(name) & HEAVY_CAPABILITIES)


def needs_profiles(name: str) -> bool:
    """Whether method ``name`` needs user profiles (capability ``profile``): on a benchmark without
    them it is reported not applicable and does no work."""
    return "profile" in _capabilities(name)


def needs_llm(name: str) -> bool:
    """Whether method ``name`` uses the harness's LLM: its submission.toml says ``llm = true``, or
    (``module:Class``, entry points) its class declares the ``llm`` capability."""
    from personalrewardbench.methods import MethodError, _resolve_class, resolve_method

    try:
        info = resolve_method(name)
        if info.folder is not None:
            return bool(info.requirements.get("llm"))
        return "llm" in getattr(_resolve_class(info.entry, None), "capabilities", ())
    except (MethodError, ImportError):  # reported when the method is built
        return False


def check_method_names(methods: list[str]) -> None:
    """Every name resolves (registered, ``module:Class`` or a folder), else one UserError naming each
    unknown one with the closest known names, before any work starts."""
    from personalrewardbench.cli import UserError
    from personalrewardbench.methods import MethodError, resolve_method

    if not methods:
        raise UserError("--methods: no method named; give comma-separated names, e.g. --methods length,embed-logreg "
                        "(`prb evaluate --list-methods` lists them), or leave --methods out to run every baseline")
    problems = []
    for name in methods:
        try:
            resolve_method(name)
        except MethodError as exc:
            problems.append(str(exc))
    if problems:
        raise UserError("--methods: " + "; ".join(problems))
