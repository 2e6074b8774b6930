"""Run an untrusted adapter in an isolated child process: :class:`SandboxedMethod`.

``SandboxedMethod(folder)`` is a :class:`~personalrewardbench.methods.Method` proxy;
``run_evaluation`` treats it like any other method. The adapter runs in
:mod:`personalrewardbench.submissions.worker` inside bubblewrap
(:mod:`~personalrewardbench.submissions.isolation`) on a read-only snapshot of its folder
(:mod:`~personalrewardbench.submissions.snapshot`), and receives only user histories
(train/val) and label-free queries, as JSON over pipes
(:mod:`~personalrewardbench.submissions.protocol`). Its LLM calls are answered here, by
the harness's LLM (caching and cost accounting stay in one place). A watchdog
(:mod:`~personalrewardbench.submissions.limits`) holds the memory, process and wall-clock
limits over its whole process tree. Everything it returns is checked
(:mod:`~personalrewardbench.submissions.checks`): any failure raises
:class:`SandboxError` naming the phase, the cause and the fix, and the sandbox is killed.
What the results record about the sandbox (``method_usage.sandbox``) comes from the
harness alone; the adapter's own counters go under ``method_usage.adapter``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from personalrewardbench.data.schema import Query, UserHistory
from personalrewardbench.methods import CAPABILITIES, Method, MethodEnv, read_folder_methods
from personalrewardbench.submissions import isolation as iso
from personalrewardbench.submissions.cgroups import Cgroup1, Cgroup2
from personalrewardbench.submissions.checks import (
    SIGNAL_HINTS,
    SandboxError,
    check_artifacts,
    check_hello,
    check_predictions,
    check_usage,
)
from personalrewardbench.submissions.limits import SandboxLimits, Watchdog, enforcement_notes, worker_limits
from personalrewardbench.submissions.llm_service import answer_llm
from personalrewardbench.submissions.protocol import (
    Channel,
    ChannelClosed,
    ChannelError,
    ChannelTimeout,
    history_to_dict,
    query_to_dict,
)
from personalrewardbench.submissions.report import read_log_tail
from personalrewardbench.submissions.snapshot import Snapshot
from personalrewardbench.submissions.spec import read_submission
from personalrewardbench.submissions.syscall_filter import SeccompUnavailable, filter_fd


class SandboxedMethod(Method):
    """A Method whose code runs in an isolated child process (see the module docstring).

    ``method_name``: the submission's name or a variant's full name (default: the base name);
    ``config``: merged over that name's config from submission.toml; ``snapshot``: a
    :class:`Snapshot` of the folder to share between variants (default: a private one).
    The child starts (and the adapter is constructed) here; call :meth:`close` when done.
    Raises SubmissionError (bad folder) or SandboxError (kind ``isolation`` when this
    machine cannot isolate and ``none`` was not explicitly allowed; any adapter failure).
    """

    def __init__(self, folder: str | Path, method_name: str | None = None, *,
                 config: Mapping[str, Any] | None = None, limits: SandboxLimits | None = None,
                 snapshot: Snapshot | None = None) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._own_snapshot: Snapshot | None = None
        self._watchdog: Watchdog | None = None
        self._cgroup: Cgroup2 | Cgroup1 | None = None
        self._tmp = ""
        self.submission = read_submission(folder)
        self.folder = self.submission.folder.resolve()
        self.name = method_name or self.submission.name  # type: ignore[misc]
        self.source = str(self.folder)
        self._config = {**self.submission.config_for(self.name), **(config or {})}
        # where it comes from and its tier, read from the toml only: no adapter code runs in this process
        self.method_info = {i.name: i for i in read_folder_methods(self.folder)}.get(self.name)
        self.limits = limits or SandboxLimits()
        self.mode = self.limits.isolation
        try:
            iso.check_mode(self.mode, self.limits.trust_code)
        except iso.IsolationUnavailable as exc:
            raise SandboxError(f"{self.name}: {exc}", "isolation") from None
        self._failure: SandboxError | None = None
        self._llm_seconds = 0.0
        self._llm_pace: dict[str, float] = {}  # seconds per prompt by kind of LLM request (sizes the slices)
        self._starting = False
        self._notes: list[str] = []
        self._phase_seconds: dict[str, float] = {}
        self._next_id = 0
        try:
            if snapshot is None:
                snapshot = self._own_snapshot = Snapshot(self.folder)
            self.snapshot = snapshot
            hello = self._spawn()
            who = f"submission {self.name!r}"
            try:
                self.capabilities, reported = check_hello(hello, who, CAPABILITIES)  # type: ignore[misc]
            except SandboxError as err:
                raise self._fail(str(err).split(": ", 1)[1], err.kind, "start") from None
        except BaseException:
            self.close()  # no process, cgroup or temporary folder left behind
            raise
        # the adapter's get_config() adds its defaults; the keys the harness passed win
        self._reported_config = {**reported, **self._config}

    # ---- process management --------------------------------------------------------------------
    def _spawn(self) -> Any:
        self._tmp = tempfile.mkdtemp(prefix="prb-sandbox-")  # harness-only: the sandbox never sees it
        os.chmod(self._tmp, 0o700)
        self.log_path = Path(self._tmp) / "adapter.log"
        workdir = os.path.join(self._tmp, "work")
        p2c_r, p2c_w = os.pipe()
        c2p_r, c2p_w = os.pipe()
        worker = iso.harness_module_command("personalrewardbench.submissions.worker", str(p2c_r), str(c2p_w))
        passed = [p2c_r, c2p_w]
        try:
            if self.mode == "bwrap":
                try:
                    passed.append(filter_fd())
                except SeccompUnavailable as exc:
                    raise iso.IsolationUnavailable(str(exc)) from None
                cmd = iso.bwrap_command(self.snapshot.path, tmp_mb=self.limits.tmp_mb,
                                        extra_read_only=self.limits.extra_read_only,
                                        gpu=self.submission.requirements.gpu, notes=self._notes,
                                        seccomp_fd=passed[2]) + worker
                folder, home, env_home = iso.SNAPSHOT_MOUNT, "/tmp/work", "/tmp/work"
            else:
                os.makedirs(workdir, mode=0o700)
                cmd = iso.harness_module_command("personalrewardbench.submissions.reaper", "--fds",
                                                 f"{p2c_r},{c2p_w}", "--", *worker)
                folder, home, env_home = str(self.snapshot.path), workdir, workdir
        except iso.IsolationUnavailable as exc:
            for fd in (*passed, p2c_w, c2p_r):
                os.close(fd)
            raise SandboxError(f"{self.name}: {exc}", "isolation") from None
        self._cgroup = Cgroup2.create(self.limits) or Cgroup1.create(self.limits)
        if self._cgroup is not None:
            cmd = self._cgroup.wrap(cmd)
        t_spawn = time.monotonic()
        with open(self.log_path, "wb") as log:
            try:
                self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                              cwd="/" if self.mode == "bwrap" else workdir,
                                              env=iso.scrubbed_env(env_home), pass_fds=tuple(passed),
                                              start_new_session=True)
            except OSError as exc:
                raise SandboxError(f"{self.name}: cannot start the sandbox ({exc}). Fix: {iso.REFUSAL_FIX}",
                                   "isolation") from None
            finally:
                for fd in passed:
                    os.close(fd)
        self._chan = Channel(c2p_r, p2c_w, max_bytes=self.limits.message_mb * 1024 * 1024)
        self._t0 = t_spawn
        self._deadline_at = t_spawn + self.limits.time_s  # one wall clock for the whole run
        cg = self._cgroup
        in_cgroup = cg is not None and cg.holds(self._proc.pid, wait_s=2.0)
        self._notes += enforcement_notes(self.mode, cg.describe if cg is not None and in_cgroup else None,
                                         self._notes)
        self._watchdog = Watchdog(self._proc.pid, self.limits, self._kill_tree,
                                  tmp_mounts=iso.TMP_MOUNTS if self.mode == "bwrap" else (),
                                  oom_check=cg.oom_killed if cg is not None and in_cgroup else None)
        self._watchdog.deadline = self._deadline_at
        self._watchdog.start()
        limits = worker_limits(self.limits, self.mode)
        self._starting = True
        try:
            return self._call({"op": "start", "folder": folder, "workdir": home, "limits": limits,
                               "config": self._config, "message_bytes": self.limits.message_mb * 1024 * 1024},
                              "start")
        finally:
            self._starting = False

    def _kill_tree(self) -> None:
        """SIGKILL the sandbox: bubblewrap's PID namespace (or the reaper's sweep) takes every process with it."""
        proc = self._proc
        if self._cgroup is not None:
            self._cgroup.kill()
        if proc is None or proc.poll() is not None:
            return
        if self.mode == "none":
            try:
                os.kill(proc.pid, signal.SIGTERM)  # the reaper kills every descendant, then exits
                proc.wait(timeout=5)
                return
            except (OSError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()

    def _stop(self, grace: float = 0.0) -> int | None:
        """Kill the sandbox (after ``grace`` seconds for it to exit on its own); its exit status."""
        if self._proc is None:
            return None
        if grace > 0:
            try:
                self._proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        self._kill_tree()
        try:
            return self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - unkillable child
            return None

    def _log_tail(self) -> str:
        tail = "\n".join("    " + ln for ln in read_log_tail(self.log_path)) if hasattr(self, "log_path") else ""
        return f"\n  last lines of the adapter's output:\n{tail}" if tail else ""

    def _fail(self, message: str, kind: str, phase: str) -> SandboxError:
        rc = self._stop(grace=1.0 if kind == "crash" else 0.0)
        wd = self._watchdog
        if wd is not None and wd.reason is not None:
            kind = wd.reason
            message = {"memory": f"used more than its memory limit of {self.limits.memory_mb} MiB ({wd.detail}) "
                                 "and was stopped; use less memory or raise the limit with --memory-limit",
                       "processes": f"started too many processes ({wd.detail}) and was stopped",
                       "timeout": self._timeout_text()}[kind]
        elif self._cgroup is not None and self._cgroup.oom_killed():
            kind, message = "memory", (f"used more than its memory limit of {self.limits.memory_mb} MiB (its "
                                       "processes and temporary files together) and was killed; use less memory or "
                                       "raise the limit with --memory-limit")
        elif kind == "crash" and rc is not None and (rc < 0 or rc > 128):
            sig = -rc if rc < 0 else rc - 128
            hint = SIGNAL_HINTS.get(sig, f"killed by signal {sig}")  # type: ignore[call-overload]
            if sig in (signal.SIGKILL, signal.SIGSEGV, signal.SIGABRT):
                hint += f" (limit {self.limits.memory_mb} MiB; raise it with --memory-limit)"
                kind = "memory" if sig == signal.SIGKILL else kind
            message = f"{message}: {hint}"
        elif kind == "crash" and rc is not None:
            message = f"{message} (exit code {rc})"
            if phase == "start" and any(ln.startswith("bwrap:") for ln in read_log_tail(self.log_path)):
                kind, message = "isolation", f"bubblewrap could not set up the sandbox here. Fix: {iso.REFUSAL_FIX}"
        err = SandboxError(f"submission {self.name!r} failed during {phase}: {message}{self._log_tail()}", kind)
        self._failure = err
        return err

    def _timeout_text(self) -> str:
        if self._starting and time.monotonic() - self._t0 >= self.limits.start_s:
            return (f"exceeded its start-up limit of {self.limits.start_s:g} s and was stopped; make importing and "
                    "constructing the adapter faster")
        return (f"exceeded its time limit of {self.limits.time_s:g} s for the whole run (LLM service time "
                f"included: {self._llm_seconds:.1f} s) and was stopped; make it faster or raise --time-limit")

    def _deadline(self) -> float:
        if self._starting:
            return min(self._deadline_at, self._t0 + self.limits.start_s)
        return self._deadline_at

    def _call(self, msg: dict[str, Any], phase: str) -> Any:
        if self._failure is not None:
            raise self._failure
        t0 = time.monotonic()
        self._next_id += 1
        rid = self._next_id
        try:
            self._chan.send({**msg, "id": rid}, deadline=self._deadline())
            while True:
                reply = self._chan.recv(deadline=self._deadline())
                if reply.get("op") == "llm":
                    self._serve_llm(reply)
                    continue
                break
        except ChannelTimeout:
            raise self._fail(self._timeout_text(), "timeout", phase) from None
        except ChannelClosed:
            raise self._fail("the adapter process exited unexpectedly", "crash", phase) from None
        except ChannelError as exc:
            raise self._fail(f"the adapter process broke the protocol ({exc}); do not write to the harness's "
                             "pipes", "protocol", phase) from None
        finally:
            self._phase_seconds[phase] = self._phase_seconds.get(phase, 0.0) + time.monotonic() - t0
        if reply.get("id") != rid:
            raise self._fail(f"the adapter process broke the protocol (a reply to request {str(reply.get('id'))[:40]}"
                             f" while waiting for {rid}); do not write to the harness's pipes", "protocol", phase)
        if reply.get("ok") is True:
            return reply.get("result")
        if reply.get("kind") == "memory":
            raise self._fail(f"ran out of memory (memory limit {self.limits.memory_mb} MiB); use less memory or raise "
                             "the limit with --memory-limit", "memory", phase)
        if reply.get("ok") is False:
            tb = str(reply.get("traceback") or "").rstrip()[-6000:]
            tb = "\n" + "\n".join("    " + ln[:500] for ln in tb.splitlines()[-20:]) if tb else ""
            error = str(reply.get("error"))[:2000]
            if self.mode == "bwrap" and "[Errno 1] Operation not permitted" in error:
                error += f" ({iso.SECCOMP_HINT})"
            raise self._fail(f"the adapter raised {error}{tb}", "crash-exception", phase)
        raise self._fail(f"the adapter process broke the protocol (unexpected message {str(reply)[:200]})",
                         "protocol", phase)

    def _serve_llm(self, msg: Mapping[str, Any]) -> None:
        t0 = time.monotonic()
        llm = getattr(getattr(self, "env", None), "llm", None)
        try:
            result = answer_llm(llm, msg.get("fn"), msg.get("args"), deadline=self._deadline(),
                                slice_size=self.limits.llm_slice, pace=self._llm_pace)
            reply: dict[str, Any] = {"ok": True, "result": result}
        except TimeoutError:
            raise ChannelTimeout("deadline passed while answering LLM requests") from None
        except Exception as exc:  # noqa: BLE001 - sent back to the adapter as an LLMError
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}
        finally:
            self._llm_seconds += time.monotonic() - t0
        self._chan.send(reply, deadline=self._deadline())

    # ---- the Method contract -------------------------------------------------------------------
    def setup(self, env: MethodEnv) -> None:
        super().setup(env)
        llm = None
        if env.llm is not None:
            llm = {"identity": env.llm.identity, "context_length": env.llm.context_length}
        self._call({"op": "setup", "seed": env.seed, "device": env.device, "options": dict(env.options),
                    "show_progress": env.show_progress, "llm": llm}, "setup")

    def fit(self, histories: Sequence[UserHistory]) -> None:
        self._call({"op": "fit", "histories": [history_to_dict(h) for h in histories]}, "fit")

    def predict(self, queries: Sequence[Query]) -> list[float | None]:
        values = self._call({"op": "predict", "queries": [query_to_dict(q) for q in queries]}, "predict")
        try:
            return check_predictions(values, queries, f"submission {self.name!r}")
        except SandboxError as err:
            raise self._fail(str(err).split(": ", 1)[1], "bad-output", "predict") from None

    def artifacts(self) -> dict[str, str]:
        arts = self._call({"op": "artifacts"}, "artifacts")
        try:
            return check_artifacts(arts, f"submission {self.name!r}")
        except SandboxError as err:
            raise self._fail(str(err).split(": ", 1)[1], "bad-output", "artifacts") from None

    def usage(self) -> dict[str, Any]:
        """``{"sandbox": <the harness's own record>, "adapter": <the adapter's counters or None>}``; the
        harness's record is kept whatever the adapter's ``usage()`` does (raises, hangs, breaks the protocol)."""
        try:
            own, problem = check_usage(self._call({"op": "usage"}, "usage"))
        except SandboxError as err:  # its text stays out of the results: only the kind of failure is noted
            own, problem = None, f"usage() failed ({err.kind}); the adapter's counters are left out"
        if problem:
            self._notes.append(problem)
        return {"sandbox": self.sandbox_report(), "adapter": own}

    def sandbox_report(self) -> dict[str, Any]:
        """How this adapter was isolated and limited (saved with the results; written by the harness only)."""
        wd = self._watchdog
        return {"mode": self.mode, "enforced": list(iso.ENFORCED[self.mode]), "notes": list(self._notes),
                "uid": iso.NOBODY if self.mode == "bwrap" else os.getuid(),  # the adapter's uid as it sees it
                "limits": {"time_s": self.limits.time_s, "memory_mb": self.limits.memory_mb,
                           "tmp_mb": self.limits.tmp_mb, "max_processes": self.limits.max_processes},
                "peak": {"memory_mb": round((wd.peak_bytes if wd else 0) / 2**20, 1),
                         "processes": wd.peak_processes if wd else 0},
                "seconds": {k: round(v, 3) for k, v in self._phase_seconds.items()},
                "harness_llm_seconds": round(self._llm_seconds, 3)}

    def get_config(self) -> dict[str, Any]:
        return dict(self._reported_config)

    def close(self) -> None:
        """Stop the adapter's processes and remove its temporary files, cgroup and private snapshot."""
        proc = self._proc
        if proc is not None and proc.poll() is None and self._failure is None and hasattr(self, "_chan"):
            try:
                self._chan.send({"op": "close", "id": 0}, deadline=time.monotonic() + 5)
                proc.wait(timeout=5)
            except (ChannelClosed, ChannelTimeout, subprocess.TimeoutExpired):
                pass
        self._stop()
        if self._watchdog is not None:
            self._watchdog.stop()
        if hasattr(self, "_chan"):
            for fd in (self._chan.read_fd, self._chan.write_fd):
                try:
                    os.close(fd)
                except OSError:
                    pass
            del self._chan
        if self._cgroup is not None:
            self._cgroup.remove()
            self._cgroup = None
        if self._own_snapshot is not None:
            self._own_snapshot.remove()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> SandboxedMethod:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if self._proc is not None and self._proc.poll() is None:
                self._kill_tree()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
