"""Command-line options shared by several verbs: the cache root and CPU threads.

``--cache-dir DIR`` means one thing on every verb: the root of prb's caches, the same as
``$PRB_CACHE_DIR`` (default ``.prb-cache``): built benchmarks in ``DIR/data``, LLM requests in
``DIR/llm``, method caches (embeddings, reward-model checkpoints) in ``DIR`` itself.
``--data-cache-dir`` names the built-benchmark cache folder alone. Until this version
``--cache-dir`` named the data cache under ``prb data`` and the LLM request-cache folder elsewhere;
a folder laid out the old way is still used, with a note.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

CACHE_ENV = "PRB_CACHE_DIR"
DEFAULT_CACHE = ".prb-cache"
CACHE_DIR_HELP = (f"root of prb's caches (default ${CACHE_ENV} or {DEFAULT_CACHE}): built benchmarks in DIR/data, "
                  "LLM requests in DIR/llm, method caches (embeddings, checkpoints) in DIR")
THREADS_HELP = ("CPU threads for torch/OpenMP/BLAS (default: the CPUs this process may use, from its affinity mask "
                "and cgroup quota; recorded in results)")


class HelpFormatter(argparse.HelpFormatter):
    """Wraps descriptions as usual; keeps text with line breaks (the examples epilog) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def plural(n: int, word: str, many: str | None = None) -> str:
    """``"1 method"``, ``"2 methods"``, ``"0 methods"``: ``n`` and the word in its number (``many``
    when the plural is not ``word + "s"``)."""
    return f"{n} {word if n == 1 else many or word + 's'}"


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {n}")
    return n


def users_count(text: str) -> int | None:
    """argparse type for ``--users``: a whole number >= 1, or ``all`` (None: every user)."""
    if str(text).strip().lower() == "all":
        return None
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"give a number of users (at least 1) or 'all', not {text!r}") from None


def bootstrap_count(text: str) -> int:
    """argparse type for ``--bootstrap``: a whole number >= 0 (0: no bootstrap; the Wilson score
    interval, or the exact Clopper-Pearson one at 0% or 100%, instead)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of resamples, got {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more resamples, got {n} (0 turns the bootstrap off: "
                                         "Wilson score intervals instead)")
    return n


BOOTSTRAP_HELP = ("bootstrap resamples for the 95%% CIs (default: 1000; 0: no bootstrap, the Wilson score "
                  "interval instead)")
# Options that always name a folder prb creates or writes into (besides each verb's own folder_options).
CACHE_FOLDER_OPTIONS = ("cache_dir", "data_cache_dir", "llm_cache_dir")


def check_folder_options(args: argparse.Namespace) -> None:
    """UserError naming the option when a folder option (``args.folder_options`` and the cache
    folders) is a file or lies under one, before any work starts (else the first write deep inside
    fails with "Not a directory: .../some-file")."""
    from personalrewardbench.cli import UserError

    for dest in (*getattr(args, "folder_options", ()), *CACHE_FOLDER_OPTIONS):
        value = getattr(args, dest, None)
        if not value:
            continue
        option, path = "--" + dest.replace("_", "-"), Path(value).expanduser()
        for q in (path, *path.parents):
            if not q.exists():
                continue
            if q.is_dir():
                break
            if q == path:
                raise UserError(f"{option} {value}: is a file, not a folder; pass a folder path (it is created if "
                                "missing) or move the file away")
            raise UserError(f"{option} {value}: {q} is a file, so the folder cannot be created under it; pass "
                            "another path")


def quiet_libraries() -> None:
    """``--quiet``: also silence the progress bars of the libraries prb drives (transformers' "Loading
    weights", huggingface_hub downloads, datasets): through ``HF_HUB_DISABLE_PROGRESS_BARS`` for
    libraries imported later, and their own switches for those already imported."""
    import importlib

    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    for module, fn in (("huggingface_hub.utils", "disable_progress_bars"),
                       ("transformers.utils.logging", "disable_progress_bar"),
                       ("datasets.utils.logging", "disable_progress_bar")):
        if module.split(".")[0] in sys.modules or module.startswith("huggingface_hub"):
            try:
                getattr(importlib.import_module(module), fn)()
            except Exception:  # noqa: BLE001 - a library without the switch keeps its bars
                pass


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N", help=THREADS_HELP)


def cache_root() -> Path:
    """The cache root: ``$PRB_CACHE_DIR`` or ``.prb-cache``."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def apply_cache_dir(args: argparse.Namespace) -> None:
    """Make ``--cache-dir`` the cache root for this process (sets ``$PRB_CACHE_DIR``), and keep
    folders in the old layouts working: an LLM request cache directly in DIR, or built benchmarks
    directly in DIR (``prb data --cache-dir``), are used where they are, with a note."""
    root = getattr(args, "cache_dir", None)
    if not root:
        return
    root_path = Path(root).expanduser()
    os.environ[CACHE_ENV] = str(root_path)
    if (root_path / "requests.sqlite3").is_file() and not (root_path / "llm").exists() \
            and hasattr(args, "backend") and not getattr(args, "llm_cache_dir", None):
        args.llm_cache_dir = str(root_path)
        print(f"prb: note: {root_path} holds an LLM request cache in the old layout (--cache-dir used to name that "
              f"folder; it is now the cache root); using it; move requests.sqlite3* to {root_path / 'llm'}/ to "
              "silence this", file=sys.stderr)
    if hasattr(args, "data_cache_dir") and not args.data_cache_dir and any(root_path.glob("*.pkl")) \
            and not (root_path / "data").exists():
        args.data_cache_dir = str(root_path)
        print(f"prb: note: {root_path} holds built benchmarks in the old layout (`prb data --cache-dir` used to name "
              f"the data cache; it is now the cache root); using it; move them to {root_path / 'data'}/ or pass "
              "--data-cache-dir to silence this", file=sys.stderr)


# Where a verb that takes one value of an option has a sibling that takes several, say so.
SEVERAL_ELSEWHERE = {
    "dataset": "`prb run --dataset A --dataset B` and `prb data stats` take several",
    "method": "`prb run --methods a,b` runs several",
    "methods": "list them comma-separated in one --methods",
}
_GIVEN = "_prb_given_options"  # namespace attribute: dests given so far in this parse (removed after parsing)


class SingleValueAction(argparse._StoreAction):
    """``store``, but a second occurrence of the option is refused (a :class:`UserError`, printed as
    one ``prb: error:`` line) instead of silently replacing the first value (argparse's default:
    the last one wins)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        from personalrewardbench.cli import UserError

        given: dict[str, Any] = namespace.__dict__.setdefault(_GIVEN, {})
        if self.dest in given:
            opt = option_string or self.option_strings[-1]
            first, second = given[self.dest], values
            elsewhere = SEVERAL_ELSEWHERE.get(self.dest, "")
            raise UserError(f"{opt} given twice ({first!r} and {second!r}); `{parser.prog}` takes one "
                            f"{self.metavar or self.dest.upper()}: pass it once"
                            + (f" ({elsewhere})" if elsewhere else ""))
        given[self.dest] = values
        super().__call__(parser, namespace, values, option_string)


def refuse_repeats(parser: argparse.ArgumentParser) -> None:
    """Make every single-value option (argparse ``store``) of ``parser`` and its sub-commands a
    :class:`SingleValueAction`, so ``--dataset A --dataset B`` on a verb taking one is an error,
    not a silently dropped ``A``. Options meant to repeat use ``append`` and are left alone."""
    for action in parser._actions:
        if type(action) is argparse._StoreAction and action.option_strings:
            action.__class__ = SingleValueAction
        elif isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                refuse_repeats(child)


def drop_given_marker(namespace: argparse.Namespace) -> None:
    """Remove :class:`SingleValueAction`'s bookkeeping from a parsed namespace."""
    namespace.__dict__.pop(_GIVEN, None)
