"""Run an untrusted adapter in a child process: :class:`SandboxedMethod`.

``SandboxedMethod(folder)`` is a :class:`~personalrewardbench.methods.Method`
proxy; ``run_evaluation`` treats it like any other method. The real adapter
runs in ``personalrewardbench.sandbox_worker`` and receives only user
histories (train/val) and label-free queries, as JSON over pipes. Its LLM
calls are answered here, by the harness's LLM (so caching and cost
accounting stay in one place). Everything it returns is checked: a crash, a
hang, running out of memory, a wrong number of predictions, NaN, non-numbers
or values outside [0, 1] raise :class:`SandboxError` with a report that names
the phase, the cause and the fix, and the process is killed. What isolation is
enforced depends on the OS; see :mod:`personalrewardbench.sandbox_isolation`
(the mode and the list of enforced measures are saved in the results under
``method_usage.sandbox``).
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from personalrewardbench import sandbox_isolation as iso
from personalrewardbench.data.schema import Query, UserHistory
from personalrewardbench.methods import Method, MethodEnv, MethodError, read_folder_methods
from personalrewardbench.sandbox_protocol import (
    Channel,
    ChannelClosed,
    ChannelError,
    ChannelTimeout,
    chat_from_list,
    history_to_dict,
    query_to_dict,
)
from personalrewardbench.submission import read_submission

LOG_TAIL_LINES = 25
SIGNAL_HINTS = {
    signal.SIGKILL: "killed (SIGKILL): usually the memory limit or the system's OOM killer",
    signal.SIGSEGV: "segmentation fault: often a native library failing to allocate under the memory limit",
    signal.SIGXCPU: "CPU-time limit exceeded (RLIMIT_CPU)",
    signal.SIGXFSZ: "file-size limit exceeded: the adapter wrote a too-large file or log",
    signal.SIGABRT: "aborted: often a native library failing to allocate under the memory limit",
}


class SandboxError(MethodError):
    """The sandboxed adapter failed; ``kind`` is crash|timeout|memory|bad-output|protocol|isolation."""

    def __init__(self, message: str, kind: str = "crash") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits for one sandboxed adapter.

    ``time_s`` bounds the adapter's own wall-clock time from the end of its
    start-up (process start and constructing the adapter, bounded by ``start_s``)
    to its last answer (time the harness spends answering its LLM requests is not counted);
    ``memory_mb`` is its address-space limit; ``isolation`` is ``auto`` (the
    strongest available), ``root``, ``userns`` or ``process``; with
    ``require_isolation`` a machine that only allows ``process`` is an error.
    """

    time_s: float = 3600.0
    memory_mb: int = 8192
    start_s: float = 120.0
    tmp_mb: int = 1024
    fsize_mb: int = 1024
    isolation: str = "auto"
    require_isolation: bool = False
    extra_read_only: tuple[str, ...] = field(default=())


def _scrubbed_env(home: str) -> dict[str, str]:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HF_HOME": f"{home}/hf",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def check_predictions(values: Any, queries: Sequence[Query], who: str) -> list[float | None]:
    """The worker's answer to ``predict`` as a list of floats/None, or SandboxError naming each problem."""
    n = len(queries)
    if not isinstance(values, list):
        raise SandboxError(f"{who}: predict returned a {type(values).__name__}, not a list; return one value per "
                           "query, in the order given", "bad-output")
    if len(values) != n:
        raise SandboxError(f"{who}: predict returned {len(values)} values for {n} queries; return exactly one value "
                           "per query, in the order given (None for a failed judgment)", "bad-output")
    out: list[float | None] = []
    problems: list[str] = []
    for q, v in zip(queries, values, strict=True):
        if v is None:
            out.append(None)
            continue
        if isinstance(v, bool) or not isinstance(v, int | float):
            kind = v.get("type", "?") if isinstance(v, dict) else ("non-finite" if isinstance(v, str) else "?")
            desc = f"{v} (not finite)" if isinstance(v, str) else f"a {kind}"
            problems.append(f"query {q.query_id}: {desc}")
        elif not math.isfinite(v) or not 0.0 <= v <= 1.0:
            problems.append(f"query {q.query_id}: {v!r} is outside [0, 1]")
        out.append(float(v) if not problems else None)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise SandboxError(f"{who}: predict returned {len(problems)} invalid value(s): {shown}. Return P(first "
                           "preferred) as a float in [0, 1], 0.5 for a tie, or None for a failed judgment",
                           "bad-output")
    return out


class SandboxedMethod(Method):
    """A Method whose code runs in an isolated child process (see the module docstring).

    ``method_name`` is the submission's name or a variant's full name (default: the
    base name); ``config`` is merged over that name's config from submission.toml.
    The child starts (and the adapter is constructed) here; call :meth:`close` when done.
    """

    def __init__(self, folder: str | Path, method_name: str | None = None, *,
                 config: Mapping[str, Any] | None = None, limits: SandboxLimits | None = None) -> None:
        self.submission = read_submission(folder)
        self.folder = self.submission.folder.resolve()
        self.name = method_name or self.submission.name  # type: ignore[misc]
        self.source = str(self.folder)
        self._config = {**self.submission.config_for(self.name), **(config or {})}
        # where it comes from and its tier (reproduced for baselines/, submitted otherwise), read from the
        # toml only: no adapter code runs in this process
        self.method_info = {i.name: i for i in read_folder_methods(self.folder)}.get(self.name)
        self.limits = limits or SandboxLimits()
        self.mode = iso.detect_mode() if self.limits.isolation == "auto" else self.limits.isolation
        if self.limits.require_isolation and self.mode == "process":
            raise SandboxError(f"{self.name}: this machine cannot isolate adapters (no Linux namespaces); run as root "
                               "on Linux, enable unprivileged user namespaces, or drop --require-isolation",
                               "isolation")
        self._proc: subprocess.Popen[bytes] | None = None
        self._failure: SandboxError | None = None
        self._llm_seconds = 0.0
        self._starting = False
        self._notes: list[str] = []
        self._phase_seconds: dict[str, float] = {}
        try:
            hello = self._spawn()
        except BaseException:
            self.close()  # no process or temporary folder left behind
            raise
        self.capabilities = frozenset(str(c) for c in hello.get("capabilities") or ())  # type: ignore[misc]
        # the adapter's own get_config() adds its defaults; the keys the harness passed are authoritative
        reported = hello.get("config") if isinstance(hello.get("config"), dict) else {}
        self._reported_config = {**reported, **self._config}
        self._notes += [str(n) for n in hello.get("notes") or ()]
        self.sandbox_uid = hello.get("uid")

    # ---- process management --------------------------------------------------------------------
    def _spawn(self) -> dict[str, Any]:
        self._tmp = tempfile.mkdtemp(prefix="prb-sandbox-")
        os.chmod(self._tmp, 0o700)
        workdir = os.path.join(self._tmp, "work")
        root = os.path.join(self._tmp, "root")
        os.makedirs(workdir)
        os.makedirs(root)
        self.log_path = Path(self._tmp) / "adapter.log"
        p2c_r, p2c_w = os.pipe()
        c2p_r, c2p_w = os.pipe()
        home = "/tmp/work" if self.mode != "process" else workdir
        cmd = [*iso.unshare_command(self.mode), sys.executable, "-I", "-B", "-m",
               "personalrewardbench.sandbox_worker", str(p2c_r), str(c2p_w)]
        if self.mode == "process":
            iso.set_dumpable(False)
        with open(self.log_path, "wb") as log:
            try:
                self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=workdir,
                                              env=_scrubbed_env(home), pass_fds=(p2c_r, c2p_w),
                                              start_new_session=True)
            except OSError as exc:
                raise SandboxError(f"{self.name}: cannot start the sandbox process ({exc})", "isolation") from None
            finally:
                os.close(p2c_r)
                os.close(c2p_w)
        self._chan = Channel(c2p_r, p2c_w)
        self._t0 = time.monotonic()
        # CPU seconds: a backstop for the wall-clock limit, allowing every core to be busy the whole time
        limits = {"memory_mb": self.limits.memory_mb, "fsize_mb": self.limits.fsize_mb,
                  "cpu_s": int(self.limits.time_s * max(1, os.cpu_count() or 1)) + 60,
                  "nproc": 512 if self.mode == "root" else None}
        binds = iso.plan_binds(self.folder, self.limits.extra_read_only) if self.mode != "process" else []
        self._starting = True
        try:
            return self._call({"op": "start", "mode": self.mode, "root": root, "binds": binds, "workdir": workdir,
                               "tmp_mb": self.limits.tmp_mb, "limits": limits, "folder": str(self.folder),
                               "config": self._config, "gpu": self.submission.requirements.gpu}, "start")
        finally:
            self._starting = False
            self._t0 = time.monotonic()  # the time limit counts from here

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        tail = "\n".join("    " + ln for ln in lines[-LOG_TAIL_LINES:])
        return f"\n  last lines of the adapter's output:\n{tail}" if tail else ""

    def _kill(self) -> int | None:
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                proc.kill()
        try:
            return proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - unkillable child
            return None

    def _fail(self, message: str, kind: str, phase: str) -> SandboxError:
        rc = self._kill()
        if kind == "crash" and rc is not None and rc < 0:
            sig = -rc
            hint = SIGNAL_HINTS.get(sig, f"killed by signal {sig}")  # type: ignore[call-overload]
            if sig in (signal.SIGKILL, signal.SIGSEGV, signal.SIGABRT):
                hint += f" (limit {self.limits.memory_mb} MiB; raise it with --memory-limit)"
                kind = "memory" if sig == signal.SIGKILL else kind
            message = f"{message}: {hint}"
        elif kind == "crash" and rc is not None:
            message = f"{message} (exit code {rc})"
        err = SandboxError(f"submission {self.name!r} failed during {phase}: {message}{self._log_tail()}", kind)
        self._failure = err
        return err

    def _call(self, msg: dict[str, Any], phase: str) -> Any:
        if self._failure is not None:
            raise self._failure
        t0 = time.monotonic()
        try:
            self._chan.send(msg, deadline=self._deadline())
            while True:
                reply = self._chan.recv(deadline=self._deadline())
                if reply.get("op") == "llm":
                    self._serve_llm(reply)
                    continue
                break
        except ChannelTimeout:
            raise self._fail(f"exceeded its {self._limit_text()} and was stopped; make it faster "
                             "or raise the limit with --time-limit", "timeout", phase) from None
        except ChannelClosed:
            raise self._fail("the adapter process exited unexpectedly", "crash", phase) from None
        except ChannelError as exc:
            raise self._fail(f"the adapter process broke the protocol ({exc}); do not write to the harness's "
                             "pipes", "protocol", phase) from None
        finally:
            self._phase_seconds[phase] = self._phase_seconds.get(phase, 0.0) + time.monotonic() - t0
        if reply.get("ok") is True:
            return reply.get("result")
        if reply.get("kind") == "memory":
            raise self._fail(f"ran out of memory (limit {self.limits.memory_mb} MiB); use less memory or raise "
                             "the limit with --memory-limit", "memory", phase)
        if reply.get("ok") is False:
            tb = str(reply.get("traceback") or "").rstrip()
            tb = "\n  traceback (most recent call last, adapter side):\n" + "\n".join(
                "    " + ln for ln in tb.splitlines()[-20:]) if tb else ""
            raise self._fail(f"the adapter raised {reply.get('error')}{tb}", "crash-exception", phase)
        raise self._fail(f"unexpected message {str(reply)[:200]}", "protocol", phase)

    def _deadline(self) -> float:
        limit = self.limits.start_s if self._starting else self.limits.time_s
        return self._t0 + limit + self._llm_seconds

    def _limit_text(self) -> str:
        return (f"start-up limit of {self.limits.start_s:g} s" if self._starting
                else f"time limit of {self.limits.time_s:g} s")

    def _serve_llm(self, msg: Mapping[str, Any]) -> None:
        t0 = time.monotonic()
        try:
            result = self._answer_llm(str(msg.get("fn")), msg.get("args") or {})
            reply: dict[str, Any] = {"ok": True, "result": result}
        except Exception as exc:  # noqa: BLE001 - sent back to the adapter as an LLMError
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        self._llm_seconds += time.monotonic() - t0
        self._chan.send(reply, deadline=self._deadline())

    def _answer_llm(self, fn: str, args: Mapping[str, Any]) -> Any:
        llm = getattr(getattr(self, "env", None), "llm", None)
        if llm is None:
            raise RuntimeError("the harness has no LLM for this run; set [requirements] llm = true in "
                               "submission.toml and pass --backend/--model")
        if fn == "count_tokens":
            return llm.count_tokens(chat_from_list(args.get("chat")))
        chats = [chat_from_list(c) for c in args.get("chats") or []]
        if fn == "generate":
            from personalrewardbench.llm.base import GenerationParams

            p = args.get("params")
            params = GenerationParams(**{**p, "stop": tuple(p.get("stop") or ())}) if isinstance(p, dict) else None
            return [asdict(c) for c in llm.generate(chats, params)]
        if fn == "choice_logprobs":
            choices = args.get("choices")
            if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
                raise ValueError("choices must be a list of strings")
            return [dict(d) for d in llm.choice_logprobs(chats, choices)]
        raise ValueError(f"unknown LLM function {fn!r}")

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
        if not isinstance(arts, dict) or not all(isinstance(v, str) for v in arts.values()):
            raise self._fail("artifacts() must return a mapping of user_id to text", "bad-output", "artifacts")
        return arts

    def usage(self) -> dict[str, Any]:
        own = self._call({"op": "usage"}, "usage")
        out = dict(own) if isinstance(own, dict) else {}
        out["sandbox"] = self.sandbox_report()
        return out

    def sandbox_report(self) -> dict[str, Any]:
        """How this adapter was isolated (saved with the results)."""
        return {"mode": self.mode, "enforced": iso.ENFORCED[self.mode], "notes": list(self._notes),
                "uid": self.sandbox_uid, "limits": {"time_s": self.limits.time_s, "memory_mb": self.limits.memory_mb},
                "seconds": {k: round(v, 3) for k, v in self._phase_seconds.items()},
                "harness_llm_seconds": round(self._llm_seconds, 3)}

    def get_config(self) -> dict[str, Any]:
        return dict(self._reported_config)

    def close(self) -> None:
        """Stop the adapter process and remove its temporary files."""
        if self._proc is not None and self._proc.poll() is None and self._failure is None:
            try:
                self._chan.send({"op": "close"}, deadline=time.monotonic() + 5)
                self._proc.wait(timeout=5)
            except (ChannelClosed, ChannelTimeout, subprocess.TimeoutExpired):
                pass
        self._kill()
        for fd in (self._chan.read_fd, self._chan.write_fd) if hasattr(self, "_chan") else ():
            try:
                os.close(fd)
            except OSError:
                pass
        if hasattr(self, "_chan"):
            del self._chan
        if self.mode == "process":
            iso.set_dumpable(True)
        shutil.rmtree(getattr(self, "_tmp", ""), ignore_errors=True)

    def __enter__(self) -> SandboxedMethod:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if self._proc is not None and self._proc.poll() is None:
                self._kill()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

