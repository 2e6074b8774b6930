"""The ``submission.toml`` format: schema, validation, and the template for new submissions.

Every method folder (``submissions/<name>/`` and ``baselines/<name>/``) holds a
``submission.toml``, the adapter code and a README.md::

    [submission]
    name = "my-method"                  # lowercase letters, digits and '-'
    authors = ["Ada Lovelace"]
    contact = "https://github.com/ada"  # http(s) URL or an email address
    paper = "https://arxiv.org/abs/..." # optional, http(s) only
    description = "One paragraph."
    license = "MIT"
    [method]
    entry = "adapter:MyMethod"          # module inside the folder : class
    config = { temperature = 0.0 }      # constructor kwargs (optional)
    [requirements]
    llm = false                         # needs an LLM from the harness
    reward_model = false                # trains/uses a reward model (torch)
    gpu = false
    datasets = ["any"]                  # or e.g. ["chatbot_arena", "prism"]
    [variants.cot]                      # optional: registers "my-method-cot"
    config = { cot = true }             # merged over [method].config
    description = "Think step by step first."

:func:`read_submission` parses and checks the file (raising one
:class:`SubmissionError` that lists every problem with its fix);
:func:`validate_folder` also checks the folder around it (README, entry module).
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from personalrewardbench.errors import MethodError

SUBMISSION_FILE = "submission.toml"
NAME_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
ENTRY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
URL_RE = re.compile(r"^https?://[^\s/]+\.[^\s]+$|^https?://localhost\b\S*$")
MAX_NAME = 64

KNOWN_KEYS: dict[str, tuple[str, ...]] = {
    "submission": ("name", "authors", "contact", "paper", "description", "license"),
    "method": ("entry", "config"),
    "requirements": ("llm", "reward_model", "gpu", "datasets"),
    "variants": (),
}
VARIANT_KEYS = ("config", "description")
# never part of what the adapter sees: written by the harness (older layouts) or by tools
MAX_TOML_BYTES = 1 << 20
MAX_CONFIG_DEPTH = 16  # the pipe protocol refuses nesting deeper than 64 levels in what the adapter echoes back


class SubmissionError(MethodError):
    """A submission folder or its submission.toml is invalid; the message lists each fix."""


@dataclass(frozen=True)
class Requirements:
    llm: bool = False
    reward_model: bool = False
    gpu: bool = False
    datasets: tuple[str, ...] = ("any",)

    def allows_dataset(self, dataset: str) -> bool:
        return "any" in self.datasets or dataset in self.datasets


@dataclass(frozen=True)
class Variant:
    suffix: str
    config: Mapping[str, Any]
    description: str = ""


@dataclass(frozen=True)
class Submission:
    """A parsed, checked ``submission.toml`` (``folder`` is where it was read from)."""

    folder: Path
    name: str
    authors: tuple[str, ...]
    contact: str
    description: str
    license: str
    entry: str
    config: Mapping[str, Any] = field(default_factory=dict)
    paper: str | None = None
    requirements: Requirements = field(default_factory=Requirements)
    variants: Mapping[str, Variant] = field(default_factory=dict)

    @property
    def entry_module(self) -> str:
        return self.entry.split(":", 1)[0]

    @property
    def entry_class(self) -> str:
        return self.entry.split(":", 1)[1]

    def method_names(self) -> list[str]:
        """The base name plus one ``<name>-<suffix>`` per variant."""
        return [self.name] + [f"{self.name}-{s}" for s in self.variants]

    def config_for(self, method_name: str | None = None) -> dict[str, Any]:
        """Constructor kwargs for ``method_name`` (the base name or a variant's full name)."""
        if method_name in (None, self.name):
            return dict(self.config)
        for suffix, var in self.variants.items():
            if method_name == f"{self.name}-{suffix}":
                return {**self.config, **var.config}
        raise SubmissionError(
            f"{self.folder / SUBMISSION_FILE}: no variant named {method_name!r}; "
            f"known names: {', '.join(self.method_names())}"
        )


def _is_contact(value: str) -> bool:
    return bool(EMAIL_RE.match(value) or URL_RE.match(value))


def _check_str(problems: list[str], table: str, key: str, value: Any, *, required: bool, fix: str) -> str | None:
    if value is None:
        if required:
            problems.append(f"[{table}].{key} is missing; add {key} = {fix}")
        return None
    if not isinstance(value, str) or not value.strip():
        problems.append(f"[{table}].{key} must be a non-empty string, e.g. {key} = {fix}")
        return None
    return value.strip()


def _check_unknown(problems: list[str], table: str, data: Mapping[str, Any], known: tuple[str, ...]) -> None:
    for key in data:
        if key not in known:
            problems.append(f"unknown key {key!r} in [{table}]; known keys: {', '.join(known)}")


def _check_name(problems: list[str], where: str, value: str | None) -> None:
    if value is not None and (not NAME_RE.match(value) or len(value) > MAX_NAME):
        suggestion = re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-") or "my-method"
        problems.append(
            f"{where} {value!r} must be lowercase letters, digits and single '-' (at most {MAX_NAME} "
            f"characters), e.g. {suggestion!r}"
        )


def _parse(data: Mapping[str, Any], folder: Path, problems: list[str]) -> tuple[Submission, set[str]]:
    """The submission ``data`` describes, appending each problem to ``problems``; with the names of the
    fields (``name``, ``entry``, ``config``, ``variants``) whose value is unusable (a placeholder stands in)."""
    for table in data:
        if table not in KNOWN_KEYS:
            problems.append(f"unknown table [{table}]; known tables: {', '.join(f'[{t}]' for t in KNOWN_KEYS)}")
    sub = data.get("submission")
    meth = data.get("method")
    if not isinstance(sub, Mapping):
        problems.append('[submission] table is missing; start the file with [submission] and name = "my-method"')
        sub = {}
    if not isinstance(meth, Mapping):
        problems.append('[method] table is missing; add [method] with entry = "adapter:MyMethod"')
        meth = {}
    _check_unknown(problems, "submission", sub, KNOWN_KEYS["submission"])
    _check_unknown(problems, "method", meth, KNOWN_KEYS["method"])

    name = _check_str(problems, "submission", "name", sub.get("name"), required=True, fix='"my-method"')
    _check_name(problems, "[submission].name", name)
    authors = sub.get("authors")
    if authors is None:
        problems.append('[submission].authors is missing; add authors = ["Your Name"]')
        authors = []
    elif not isinstance(authors, list) or not authors or not all(isinstance(a, str) and a.strip() for a in authors):
        problems.append('[submission].authors must be a non-empty list of names, e.g. authors = ["Your Name"]')
        authors = []
    contact = _check_str(problems, "submission", "contact", sub.get("contact"), required=True,
                         fix='"https://github.com/you" or "you@example.org"')
    if contact is not None and not _is_contact(contact):
        problems.append(f"[submission].contact {contact!r} must be an http(s) URL or an email address")
    paper = _check_str(problems, "submission", "paper", sub.get("paper"), required=False,
                       fix='"https://arxiv.org/abs/..."')
    if paper is not None and not URL_RE.match(paper):
        problems.append(f"[submission].paper {paper!r} must be an http(s) URL (or leave the key out)")
    description = _check_str(problems, "submission", "description", sub.get("description"), required=True,
                             fix='"One paragraph on what the method does."')
    license_ = _check_str(problems, "submission", "license", sub.get("license"), required=True, fix='"MIT"')

    entry = _check_str(problems, "method", "entry", meth.get("entry"), required=True, fix='"adapter:MyMethod"')
    if entry is not None and not ENTRY_RE.match(entry):
        problems.append(f"[method].entry {entry!r} must be 'module:Class' (a module inside the folder, "
                        "then the class), e.g. \"adapter:MyMethod\"")
    config = meth.get("config", {})
    if not isinstance(config, Mapping):
        problems.append("[method].config must be a table of constructor arguments, e.g. config = { alpha = 1.0 }")
        config = {}
    problems += _config_problems("[method].config", config)

    req_data = data.get("requirements", {})
    if not isinstance(req_data, Mapping):
        problems.append("[requirements] must be a table")
        req_data = {}
    _check_unknown(problems, "requirements", req_data, KNOWN_KEYS["requirements"])
    flags = {}
    for key in ("llm", "reward_model", "gpu"):
        val = req_data.get(key, False)
        if not isinstance(val, bool):
            problems.append(f"[requirements].{key} must be true or false, not {val!r}")
            val = False
        flags[key] = val
    datasets = req_data.get("datasets", ["any"])
    if not isinstance(datasets, list) or not datasets or not all(isinstance(d, str) and d for d in datasets):
        problems.append('[requirements].datasets must be a non-empty list, e.g. datasets = ["any"] or '
                        '["chatbot_arena", "prism"]')
        datasets = ["any"]

    variants: dict[str, Variant] = {}
    var_data = data.get("variants", {})
    var_ok = isinstance(var_data, Mapping) and all(
        isinstance(vd, Mapping) and isinstance(vd.get("config", {}), Mapping) for vd in var_data.values())
    if not isinstance(var_data, Mapping):
        problems.append("[variants] must hold tables like [variants.cot] with config = {...}")
        var_data = {}
    for suffix, vd in var_data.items():
        _check_name(problems, "variant name [variants.<suffix>]", suffix)
        if not isinstance(vd, Mapping):
            problems.append(f"[variants.{suffix}] must be a table with config = {{...}} and optional description")
            continue
        _check_unknown(problems, f"variants.{suffix}", vd, VARIANT_KEYS)
        vconf = vd.get("config", {})
        if not isinstance(vconf, Mapping):
            problems.append(f"[variants.{suffix}].config must be a table, e.g. config = {{ cot = true }}")
            vconf = {}
        problems += _config_problems(f"[variants.{suffix}].config", vconf)
        vdesc = vd.get("description", "")
        if not isinstance(vdesc, str):
            problems.append(f"[variants.{suffix}].description must be a string")
            vdesc = ""
        variants[suffix] = Variant(suffix=suffix, config=dict(vconf), description=vdesc)

    unknown = {f for f, ok in (("name", name is not None and NAME_RE.match(name) and len(name) <= MAX_NAME),
                               ("entry", entry is not None and ENTRY_RE.match(entry)),
                               ("config", isinstance(meth.get("config", {}), Mapping)),
                               ("variants", var_ok)) if not ok}
    return Submission(
        folder=folder, name=name or "", authors=tuple(a.strip() for a in authors), contact=contact or "",
        description=description or "", license=license_ or "", entry=entry or "", config=dict(config),
        paper=paper, requirements=Requirements(datasets=tuple(datasets), **flags), variants=variants,
    ), unknown


def _raise(path: Path, problems: list[str]) -> None:
    lines = "\n".join(f"  - {p}" for p in problems)
    raise SubmissionError(f"{path}: {len(problems)} problem(s):\n{lines}")


def _locate(folder: str | Path) -> Path:
    """The submission.toml of ``folder`` (or ``folder`` itself when it names a .toml file); raise
    SubmissionError when it is a symbolic link or missing (suggesting a method folder of that name)."""
    folder = Path(folder)
    path = folder / SUBMISSION_FILE if folder.is_dir() or not folder.name.endswith(".toml") else folder
    if path.is_symlink():
        raise SubmissionError(f"{path}: is a symbolic link; commit the file itself (symlinks are never followed)")
    if not path.is_file():
        hint = _suggest_folder(folder) if not folder.exists() else None
        raise SubmissionError(f"{path}: not found; " + (f"did you mean {hint}? " if hint else "") +
                              "a method folder needs a submission.toml (run `prb submission new NAME` for a template)")
    return path


def _suggest_folder(folder: Path) -> str | None:
    """An existing method folder named like ``folder`` under submissions/ or baselines/ (of the current
    directory, then of the method roots, :func:`personalrewardbench.methods.method_dirs`)."""
    from personalrewardbench.methods import method_dirs

    for base in (Path("submissions"), Path("baselines"), *method_dirs()):
        candidate = base / folder.name
        if candidate.resolve() != folder.resolve() and (candidate / SUBMISSION_FILE).is_file():
            return str(candidate)
    return None


def _load(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(_read_text_nofollow(path))
    except tomllib.TOMLDecodeError as exc:
        raise SubmissionError(f"{path}: not valid TOML ({exc}); fix the syntax at that line") from None
    except UnicodeDecodeError:
        raise SubmissionError(f"{path}: not UTF-8 text; save it as UTF-8") from None
    except RecursionError:
        raise SubmissionError(f"{path}: arrays or tables nested too deeply to read; flatten the config") from None
    except (ValueError, MemoryError) as exc:  # e.g. an integer of thousands of digits
        raise SubmissionError(f"{path}: cannot be read ({type(exc).__name__}: {str(exc)[:120]}); keep integers "
                              "within 64 bits and the file small") from None


def read_submission(folder: str | Path) -> Submission:
    """Parse and check ``<folder>/submission.toml``; raise SubmissionError listing every problem.

    A submission.toml that is a symbolic link is refused (symlinks are never followed).
    """
    path = _locate(folder)
    problems: list[str] = []
    sub, _ = _parse(_load(path), path.parent, problems)
    if problems:
        _raise(path, problems)
    return sub


def parse_for_report(folder: str | Path) -> tuple[Path, Submission | None, set[str], list[str]]:
    """Like :func:`read_submission` but returning instead of raising, so that validation can go on
    to the folder checks: (the submission.toml path, the parsed submission with placeholders, or None
    when the file is not readable TOML, the unusable fields as in :func:`_parse`, the problems).
    Still raises SubmissionError when there is no submission.toml (not a method folder)."""
    path = _locate(folder)
    try:
        data = _load(path)
    except SubmissionError as exc:
        return path, None, set(), [str(exc).removeprefix(f"{path}: ")]
    problems: list[str] = []
    sub, unknown = _parse(data, path.parent, problems)
    return path, sub, unknown, problems


def _read_text_nofollow(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(MAX_TOML_BYTES + 1)
    if len(data) > MAX_TOML_BYTES:
        raise SubmissionError(f"{path}: larger than {MAX_TOML_BYTES // 1024} KiB; keep submission.toml to the "
                              "method's metadata and a small config (put data in files next to it)")
    return data.decode("utf-8")


def _config_problems(where: str, value: Any) -> list[str]:
    """Why ``value`` (a config table) cannot travel as JSON to the adapter and back: date/time values,
    NaN/infinity, integers beyond 64 bits (TOML's own range) or nesting deeper than MAX_CONFIG_DEPTH."""
    problems: list[str] = []
    stack: list[tuple[str, Any, int]] = [(where, value, 0)]
    while stack and len(problems) < 10:
        path, v, depth = stack.pop()
        if depth > MAX_CONFIG_DEPTH:
            problems.append(f"{path} nests deeper than {MAX_CONFIG_DEPTH} levels; flatten it")
        elif isinstance(v, Mapping):
            stack.extend((f"{path}.{k}", x, depth + 1) for k, x in v.items())
        elif isinstance(v, list):
            stack.extend((f"{path}[{i}]", x, depth + 1) for i, x in enumerate(v))
        elif isinstance(v, bool | str):
            continue
        elif isinstance(v, int) and not -(1 << 63) <= v < (1 << 63):
            problems.append(f"{path} is an integer beyond 64 bits; use a smaller number or a string")
        elif isinstance(v, float) and not math.isfinite(v):
            problems.append(f"{path} is {v!r}; config values must be finite numbers (or strings)")
        elif not isinstance(v, int | float):
            problems.append(f"{path} is a TOML {type(v).__name__} value; write it as a string, e.g. \"1979-05-27\"")
    return problems


def validate_folder(folder: str | Path) -> Submission:
    """Check a method folder completely (:func:`~.folder_check.check_folder`); raise SubmissionError
    listing every problem."""
    from personalrewardbench.submissions.folder_check import check_folder

    return check_folder(folder).submission_or_raise()


def find_submission_folders(root: str | Path) -> list[Path]:
    """Folders directly under ``root`` that hold a submission.toml, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / SUBMISSION_FILE).is_file())
