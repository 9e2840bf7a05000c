"""Run one read-only command and collect what it prints, without the subprocess module.

Only the live host runs commands, and only to read the kernel log (``dmesg``): importing
``subprocess`` (with ``threading``, ``selectors``, ``signal``...) would cost a scan of this machine
more than the command itself. This does what ``subprocess.run(argv, stdin=DEVNULL, stdout=PIPE,
stderr=PIPE, timeout=...)`` does for that one use: spawn, read both pipes to their end, wait, and
kill the command when it overruns (or when the scan is interrupted while it runs).
"""

from __future__ import annotations

import _signal  # built in and loaded at start-up (the signal module is not)
import os
import select
import time
from typing import Mapping, Sequence, Tuple


class CommandTimeout(Exception):
    """The command had not finished after the given seconds: it was killed."""


def run(argv: Sequence[str], env: Mapping[str, str], timeout: float) -> Tuple[int, bytes, bytes]:
    """(exit status, stdout, stderr) of ``argv``; OSError when it cannot be started (FileNotFoundError when
    there is no such command), CommandTimeout when it outlives ``timeout`` seconds.

    As subprocess does, the child gets default SIGPIPE and SIGXFSZ handling back (Python ignores them)
    and nothing on stdin; no descriptor of ours reaches it (Python opens them non-inheritable).
    """
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        pid = os.posix_spawnp(argv[0], list(argv), dict(env), file_actions=[
            (os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)],
            setsigdef=[s for s in (getattr(_signal, "SIGPIPE", None), getattr(_signal, "SIGXFSZ", None)) if s])
    except BaseException:
        for fd in (out_r, err_r):
            os.close(fd)
        raise
    finally:
        for fd in (null, out_w, err_w):
            os.close(fd)
    reaped = False
    try:
        chunks = {out_r: [], err_r: []}
        _read_until_closed(chunks, time.monotonic() + timeout)
        status = os.waitpid(pid, 0)[1]
        reaped = True
        return os.waitstatus_to_exitcode(status), b"".join(chunks[out_r]), b"".join(chunks[err_r])
    finally:
        for fd in (out_r, err_r):
            os.close(fd)
        if not reaped:  # timed out, or interrupted (Ctrl-C, a rule's deadline): no command outlives the scan
            try:
                os.kill(pid, _signal.SIGKILL)
            except OSError:
                pass
            os.waitpid(pid, 0)


def _read_until_closed(chunks: dict, deadline: float) -> None:
    """Read every pipe in ``chunks`` (fd -> list of bytes read) until each is at its end.

    poll, not select: the host may hold more than select's 1,024 descriptors open (directories)."""
    poller = select.poll()
    for fd in chunks:
        poller.register(fd, select.POLLIN)
    open_fds = len(chunks)
    while open_fds:
        left = deadline - time.monotonic()
        if left <= 0:
            raise CommandTimeout()
        for fd, _ in poller.poll(left * 1000):
            data = os.read(fd, 65536)
            if data:
                chunks[fd].append(data)
            else:
                poller.unregister(fd)
                open_fds -= 1
