"""Compile-check the Python files of a method folder without running them.

``prb submission validate`` reads submission.toml and looks for the entry class by name;
this adds a real compile of every ``*.py`` under the folder (skipping ``results/``, virtual
environments and caches), so an adapter with a syntax error fails validation with the file
and line instead of failing later inside the sandbox.
"""

from __future__ import annotations

from pathlib import Path

SKIP_DIRS = frozenset({"results", "__pycache__", ".venv", "venv", ".git", "node_modules", ".ipynb_checkpoints"})


def python_syntax_problems(folder: str | Path, files: list[str] | None = None) -> list[str]:
    """One line per Python file under ``folder`` that does not compile: ``FILE, line N: MESSAGE; fix ...``.

    ``files``: the folder's regular files as relative POSIX paths (what
    :func:`personalrewardbench.submissions.listing.list_folder` returns); by default that listing is
    made here. It never follows a symbolic link and stops at a bounded depth, so no tree exhausts
    the stack. Uses the built-in ``compile`` (no code runs, nothing is written). Files that are not
    UTF-8 are reported too (Python source must be UTF-8 unless it declares another encoding).
    """
    root = Path(folder)
    if files is None:
        from personalrewardbench.submissions.listing import list_folder

        files, _ = list_folder(root)
    problems: list[str] = []
    for name in sorted(f for f in files if f.endswith(".py")):
        path = root / name
        rel = Path(name)
        if any(part in SKIP_DIRS for part in rel.parts[:-1]):
            continue
        try:
            compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
        except SyntaxError as exc:  # IndentationError and TabError are SyntaxErrors
            where = f"line {exc.lineno}" + (f", column {exc.offset}" if exc.offset else "")
            problems.append(f"{path}, {where}: {exc.msg}; fix the Python syntax (`python -m py_compile {path}` "
                            "shows the same error)")
        except (ValueError, UnicodeDecodeError) as exc:  # e.g. null bytes, undecodable source
            problems.append(f"{path}: cannot be compiled ({exc}); save it as UTF-8 Python source")
        except (RecursionError, MemoryError):  # an expression nested past the compiler's limits
            problems.append(f"{path}: cannot be compiled (nested too deeply for the Python compiler); flatten the "
                            "deeply nested expression")
    return problems
