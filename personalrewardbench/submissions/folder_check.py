"""``prb submission validate``: every problem of a method folder in one run.

:func:`check_folder` parses ``submission.toml`` (:func:`~.spec.parse_for_report`) and, however far
the parse got, runs each folder check whose inputs it knows: the listing (links, special files),
Python syntax and README always; the folder name and name clashes once ``[submission].name`` is
usable; the entry module, class and config keys (:mod:`~.config_keys`) once ``[method].entry``
is. Checks that cannot be made statically give *notes*, never problems.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from personalrewardbench.source_check import python_syntax_problems
from personalrewardbench.submissions.listing import list_folder
from personalrewardbench.submissions.spec import Submission, _raise, parse_for_report


@dataclass
class FolderReport:
    """What :func:`check_folder` found: ``submission`` (None when submission.toml could not be read),
    ``problems`` (each with its fix) and ``notes`` (what was not checked statically, and why)."""

    path: Path
    submission: Submission | None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def submission_or_raise(self) -> Submission:
        """The submission, or SubmissionError listing every problem (notes are not problems)."""
        if self.problems or self.submission is None:
            _raise(self.path, self.problems)
        assert self.submission is not None
        return self.submission


def check_folder(folder: str | Path) -> FolderReport:
    """Check a method folder completely, collecting every problem (no code of it runs). Raises
    SubmissionError only when it has no submission.toml (or that file is a symbolic link)."""
    path, sub, unknown, problems = parse_for_report(folder)
    report = FolderReport(path, sub, problems)
    more, notes = folder_problems(path.parent, sub, unknown)
    report.problems += more
    report.notes += notes
    return report


def folder_problems(folder: Path, sub: Submission | None, unknown: set[str] | frozenset[str] = frozenset()
                    ) -> tuple[list[str], list[str]]:
    """(problems, notes) of the folder around a submission.toml: symbolic links or special files
    anywhere in it, Python files that do not compile, the README, and where ``sub`` (parsed, with the
    unusable fields ``unknown``) allows, the folder name, name clashes, the entry module and class,
    and the config keys."""
    files, problems = list_folder(folder)
    notes: list[str] = []
    if not problems:  # a tree list_folder refuses (links, absurd depth) is already a named problem
        problems += python_syntax_problems(folder, files)
    resolved = folder.resolve()
    readme = resolved / "README.md"
    if not readme.is_file() or readme.is_symlink():
        problems.append(f"{readme} is missing; describe the method, its settings and how it was run")
    if sub is None:
        return problems, notes
    from personalrewardbench.submissions.template import placeholder_notes

    notes += placeholder_notes(sub)
    if "name" not in unknown:
        if resolved.parent.name in ("submissions", "baselines") and resolved.name != sub.name:
            problems.append(f"folder name {resolved.name!r} differs from [submission].name {sub.name!r}; "
                            "rename one so they match")
        problems += name_clashes(sub)
    if "entry" not in unknown:
        from personalrewardbench.submissions.config_keys import entry_report

        keys = "config" not in unknown and "variants" not in unknown  # else only the module and class
        entry_problems, entry_notes = entry_report(sub, files, check_keys=keys)
        problems += entry_problems
        notes += entry_notes
    return problems, notes


def name_clashes(sub: Submission) -> list[str]:
    """Method names of ``sub`` (base and variants) already registered by another method folder: a
    submission named ``length``, or ``bt`` with ``[variants.rm]``, would otherwise claim a baseline's name."""
    from personalrewardbench.methods import method_folders

    mine = (sub.folder.resolve().parent.name, sub.folder.resolve().name)
    out = []
    for name, other in sorted(method_folders().items()):
        if name in sub.method_names() and (other.parent.name, other.name) != mine:
            out.append(f"method name {name!r} is already taken by {other.parent.name}/{other.name}; rename the "
                       "submission or the variant so that every name it declares is new")
    return out
