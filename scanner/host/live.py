"""This machine, read through the same chroot-style resolver as a tree rooted at ``/``.

Its reads are the tree's too (scanner/host/tree.py): a file's type is checked before it is
opened, so ``/dev`` nodes and FIFOs are never opened, and every open is non-blocking, so a
``/proc`` or ``/sys`` file that would wait (``/proc/kmsg``) answers with a reason instead.

Only the live host runs commands, and only to read the kernel log (``dmesg``, then the
journal's kernel messages): they are read-only, bounded in time, and their failure is a reason,
never a crash.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

from scanner.host import LARGE_CAP, Read
from scanner.host.tree import TreeHost, read_outside_file

COMMAND_TIMEOUT = 15

KERNEL_LOG_COMMANDS = (
    ("dmesg",),
    ("journalctl", "-k", "-b", "0", "--no-pager", "-q"),
)


def run_command(argv: Sequence[str], timeout: int = COMMAND_TIMEOUT) -> Read:
    """Run a read-only command; its stdout or the reason it gave none."""
    from scanner.host.command import CommandTimeout, run  # here: only reading the kernel log runs a command

    source = " ".join(argv)
    env = dict(os.environ, LC_ALL="C", SYSTEMD_PAGER="", PAGER="cat")
    try:
        returncode, stdout, stderr = run(argv, env, timeout)
    except FileNotFoundError:
        return Read(source, reason="command not found")
    except CommandTimeout:
        return Read(source, reason=f"timed out after {timeout} s")
    except OSError as exc:
        return Read(source, reason=f"could not run: {exc.strerror or exc}")
    err = stderr.decode("utf-8", "replace").strip().splitlines()
    if returncode != 0:
        why = err[-1] if err else f"exit status {returncode}"
        return Read(source, reason=why)
    out = stdout[:LARGE_CAP].decode("utf-8", "replace")
    if not out.strip():
        return Read(source, reason="printed nothing" + (f" ({err[-1]})" if err else ""))
    return Read(source, out)


class LiveHost(TreeHost):
    source = "live"

    def __init__(self, kernel_log_file: Optional[str] = None):
        super().__init__("/", kernel_log_file=kernel_log_file)
        self.machine = os.uname().machine

    def hostname(self) -> str:
        # What socket.gethostname() answers (glibc reads it from uname(2)), without importing socket.
        return os.uname().nodename or super().hostname()

    def kernel_log(self) -> Read:
        if self.kernel_log_file:
            return read_outside_file(self.kernel_log_file)
        reasons = []
        for argv in KERNEL_LOG_COMMANDS:
            got = run_command(argv)
            if got.ok:
                return got
            reasons.append(f"{got.path}: {got.reason}")
        return Read("kernel log", reason="no readable kernel log (" + "; ".join(reasons) + ")")

    def describe(self) -> str:
        return "this machine"
