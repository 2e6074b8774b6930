"""How a submission is scored: everything between a ``submissions/<name>/`` folder and its results.

Entry point: :func:`score_submission` (``prb submission score``, ``scripts/score_submissions.py``).

The path, in order, one module each:

1. ``spec``: read and check ``submission.toml`` and the folder (:func:`read_submission`,
   :func:`validate_folder`); symlinks and special files are refused.
2. ``snapshot``: copy the folder's regular files into a fresh temporary folder
   (:class:`Snapshot`); the sandbox sees only this read-only copy, never the live folder
   or anything the harness writes.
3. ``isolation``: the bubblewrap command (no capabilities, ``no_new_privs``, new
   namespaces, no new user namespaces, read-only binds, size-capped tmpfs); as root the
   sandbox also drops to uid 65534. ``syscall_filter`` is its seccomp filter (no memory
   held by the kernel outside the sandbox's processes: memfd, System V IPC, keyrings, ...). No isolation only with an explicit
   ``--isolation none --i-trust-this-code``.
4. ``sandbox``: :class:`SandboxedMethod`, the Method proxy that ``run_evaluation`` drives;
   ``worker`` is its child process, ``protocol`` the size- and depth-capped JSON pipe
   format, ``llm_service`` answers the adapter's LLM requests, ``limits`` holds the
   memory/process/wall-clock limits over the whole process tree (:class:`SandboxLimits`),
   ``cgroups`` has the kernel enforce them where the harness may create a cgroup (v2, or v1),
   ``reaper`` sweeps descendants in ``none`` mode, ``checks`` validates all it returns.
5. ``scoring``: :func:`score_submission` runs every method name through the ordinary
   ``run_evaluation`` into a results root outside the folder; query ids there are keyed by
   a per-run secret kept in the run folder (:mod:`personalrewardbench.query_keys`).
6. ``report``: the escaped Markdown report for the pull request (:func:`markdown_summary`).

``commands`` is the CLI (``prb submission validate|new|score``), ``template`` writes a new
submission folder (``prb submission new``).

The names below load lazily, so ``personalrewardbench.methods`` can read
``submission.toml`` through ``submissions.spec`` without an import circle.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "score_submission": "scoring", "ScoreOutcome": "scoring", "run_baselines": "scoring",
    "compare_with_baselines": "scoring", "markdown_summary": "report", "SandboxedMethod": "sandbox",
    "SandboxError": "checks", "SandboxLimits": "limits", "Snapshot": "snapshot", "Submission": "spec",
    "SubmissionError": "spec", "read_submission": "spec", "validate_folder": "spec", "write_template": "template",
}

__all__ = sorted(_EXPORTS)

def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
