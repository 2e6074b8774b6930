"""The seccomp filter bubblewrap loads into the sandbox (``bwrap --seccomp FD``).

Without a cgroup (a non-root harness on a cgroup v1 machine, or one without a delegated
cgroup v2 subtree) the only memory the harness can count is what its watchdog sees: the
sandbox's process maps, its private /tmp and /dev/shm, and the kernel buffers behind its
pipes and sockets (:func:`personalrewardbench.submissions.limits.kernel_buffers`). Every
other way for an unprivileged process to make the kernel hold memory on its behalf is
refused here, with ``EPERM``, before the adapter runs:

- anonymous memory files (``memfd_create``, ``memfd_secret``);
- System V shared memory, message queues and semaphores (``shmget``, ``msgget``,
  ``semget``) and POSIX message queues (``mq_open``);
- kernel keyrings (``add_key``, ``request_key``, ``keyctl``): key payloads live in the kernel;
- io_uring (``io_uring_setup``/``_enter``/``_register``: rings and registered buffers),
  ``userfaultfd``, ``bpf`` (maps), ``perf_event_open`` (ring buffers);
- growing a pipe beyond its default 16 pages (``fcntl(F_SETPIPE_SZ)``) or a socket's
  buffers beyond the system default (``setsockopt`` of ``SO_SNDBUF``/``SO_RCVBUF`` and
  their ``FORCE`` forms), so each pipe and socket holds a bounded amount;
- sockets other than Unix stream/seqpacket sockets and netlink: no IP sockets (there is no
  network in the sandbox anyway: a TCP connection over its private loopback would buffer
  megabytes per socket) and no Unix datagram sockets (one receiver can queue datagrams from
  any number of senders that have since closed).

Everything else is allowed. A call from another architecture's system call table (e.g. the
32-bit ``int 0x80`` entry on x86-64) kills the process (libseccomp's default for a foreign
architecture). The program is compiled by libseccomp (``seccomp_export_bpf``) through its
Python binding: Debian's ``python3-seccomp`` (module ``seccomp``) where importable, else the
PyPI package ``pyseccomp`` (ctypes over the same library, the same API).
"""

from __future__ import annotations

import errno
import os
import socket
import tempfile
from functools import lru_cache
from typing import Any

__all__ = ["REFUSED_CALLS", "SeccompUnavailable", "filter_fd", "filter_program"]

#: System calls refused outright (``EPERM``), with why.
REFUSED_CALLS = {
    "memfd_create": "anonymous memory files are in no process map",
    "memfd_secret": "secret memory areas",
    "shmget": "System V shared memory outlives every attachment",
    "msgget": "System V message queues hold messages in the kernel",
    "semget": "System V semaphore sets",
    "mq_open": "POSIX message queues hold messages in the kernel",
    "add_key": "key payloads live in the kernel",
    "request_key": "key payloads live in the kernel",
    "keyctl": "key payloads live in the kernel",
    "io_uring_setup": "io_uring rings and registered buffers",
    "io_uring_enter": "io_uring",
    "io_uring_register": "io_uring registered buffers",
    "userfaultfd": "stalls kernel accesses to its pages",
    "bpf": "BPF maps hold kernel memory",
    "perf_event_open": "perf ring buffers",
}

F_SETPIPE_SZ = 1031
SOL_SOCKET = 1
BUFFER_OPTIONS = (7, 8, 32, 33)  # SO_SNDBUF, SO_RCVBUF, SO_SNDBUFFORCE, SO_RCVBUFFORCE
ALLOWED_FAMILIES = (socket.AF_UNIX, socket.AF_NETLINK)  # 1, 16
SOCK_TYPE_MASK = 0xF  # the type without SOCK_NONBLOCK / SOCK_CLOEXEC
INT_MASK = 0xFFFFFFFF  # int arguments: the kernel ignores the upper half of the register


class SeccompUnavailable(RuntimeError):
    """libseccomp or its Python binding is missing; the message says how to install them."""


def _binding() -> Any:
    try:
        import seccomp  # Debian/Ubuntu python3-seccomp, libseccomp's own binding

        return seccomp
    except ImportError:
        pass
    try:
        import pyseccomp
    except ImportError:
        raise SeccompUnavailable("the Python binding of libseccomp is not installed. Fix: pip install pyseccomp "
                                 "(it comes with personalrewardbench on Linux)") from None
    except (OSError, RuntimeError) as exc:  # pyseccomp loads libseccomp.so.2 when imported
        raise SeccompUnavailable(f"libseccomp cannot be loaded ({exc}). Fix: apt-get install libseccomp2") from None
    return pyseccomp


@lru_cache(maxsize=1)
def filter_program() -> bytes:
    """The compiled BPF program (``struct sock_filter`` array, native byte order) for this machine's
    architecture. Raises :class:`SeccompUnavailable` when libseccomp or its binding is missing."""
    sc = _binding()
    refuse = sc.ERRNO(errno.EPERM)
    flt = sc.SyscallFilter(sc.ALLOW)

    def arg(n: int, value: int, mask: int = INT_MASK) -> Any:
        return sc.Arg(n, sc.MASKED_EQ, mask, value)

    for name in REFUSED_CALLS:
        try:
            flt.add_rule(refuse, name)
        except (OSError, ValueError, RuntimeError):  # not a system call on this architecture
            if name in ("memfd_create", "shmget", "msgget", "semget"):
                raise SeccompUnavailable(f"libseccomp here cannot filter {name}. Fix: update libseccomp2") from None
    flt.add_rule(refuse, "fcntl", arg(1, F_SETPIPE_SZ))
    for opt in BUFFER_OPTIONS:
        flt.add_rule(refuse, "setsockopt", arg(1, SOL_SOCKET), arg(2, opt))
    for call in ("socket", "socketpair"):
        # families other than AF_UNIX (1) and AF_NETLINK (16): 0, 2..15, and anything above 16
        for family in [0, *range(2, 16)]:
            flt.add_rule(refuse, call, arg(0, family))
        flt.add_rule(refuse, call, sc.Arg(0, sc.GT, 16))
        flt.add_rule(refuse, call, arg(0, socket.AF_UNIX), arg(1, socket.SOCK_DGRAM, SOCK_TYPE_MASK))
    with tempfile.TemporaryFile() as fh:
        flt.export_bpf(fh)
        fh.seek(0)
        return fh.read()


def filter_fd() -> int:
    """A file descriptor, positioned at the start, holding :func:`filter_program` (for ``bwrap --seccomp``);
    the caller passes it to bubblewrap and closes it."""
    program = filter_program()
    fd = os.memfd_create("prb-seccomp", os.MFD_CLOEXEC) if hasattr(os, "memfd_create") else None
    if fd is None:
        fh = tempfile.TemporaryFile()
        fd = os.dup(fh.fileno())
        fh.close()
    view = memoryview(program)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
