"""Files named on the command line (``--policy``, ``--snapshot``, ``-i``, ``--hosts-file``,
``--kernel-log``): read so that none can hang, flood or surprise a run.

Why one helper for all of them: a FIFO given as ``--policy`` used to hang the command forever (a
plain ``open`` waits for a writer that never comes), and each reader had its own ``open``. Here a
file is checked to be a regular file before it is opened (a FIFO, a terminal or a device node is
never opened at all), opened without blocking and without becoming a controlling terminal,
checked again once open (it may have been swapped in between), and read up to a cap. What is
wrong is one short phrase for the caller to put after the option and the file's name, the way
each command words its input errors (exit 2, before any scanning).
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Optional, Tuple

_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)

_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class InputFileError(Exception):
    """Why a file named on the command line cannot be used: a phrase such as
    ``not a regular file (a FIFO)``, without the file's name (the caller names it)."""


def _kind_problem(mode: int):
    """What is wrong with a file of this mode, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory"
    kind = next((name for test, name in _KINDS if test(mode)), "not a file")
    return f"not a regular file ({kind})"


def _os_problem(exc: OSError) -> str:
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return "no such file"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    return f"cannot read: {exc.strerror or exc}"


def _size_words(cap: int) -> str:
    return f"{cap >> 20} MiB" if cap >= 1 << 20 and not cap % (1 << 20) else f"{cap} bytes"


def _open_regular(path: str, cap: int) -> Tuple[int, int]:
    """(descriptor, size) of the regular file ``path`` of at most ``cap`` bytes (links followed:
    the file is the user's own)."""
    try:
        problem = _kind_problem(os.stat(path).st_mode)
        if problem:
            raise InputFileError(problem)
        fd = os.open(path, _FLAGS)
    except OSError as exc:
        raise InputFileError(_os_problem(exc)) from None
    try:
        st = os.fstat(fd)
        problem = _kind_problem(st.st_mode) or (_too_large(cap) if st.st_size > cap else None)
    except OSError as exc:
        problem = _os_problem(exc)
    if problem:
        os.close(fd)
        raise InputFileError(problem)
    return fd, st.st_size


def _too_large(cap: int) -> str:
    return f"too large (over {_size_words(cap)})"


def check_input_file(path: str, cap: int) -> None:
    """Refuse ``path`` now (raises InputFileError) unless it is a regular file of at most ``cap``
    bytes: for a file read later, so that a mistake is an input error before any scanning."""
    os.close(_open_regular(path, cap)[0])


def read_input_file(path: str, cap: int) -> bytes:
    """The bytes of the regular file ``path``, at most ``cap`` of them (raises InputFileError)."""
    fd, size = _open_regular(path, cap)
    try:
        data = read_capped(fd, cap, size)
    except OSError as exc:
        raise InputFileError(_os_problem(exc)) from None
    finally:
        os.close(fd)
    if data is None:  # it grew since it was checked
        raise InputFileError(_too_large(cap))
    return data


def read_input_text(path: str, cap: int, encoding: str = "utf-8") -> str:
    """The text of the regular file ``path`` (raises InputFileError, naming the line of a bad byte)."""
    data = read_input_file(path, cap)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise InputFileError(f"line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x})") from None


def read_capped(fd: int, cap: int, size: int = 0) -> Optional[bytes]:
    """The bytes of the open file ``fd``, or None when there are more than ``cap``.

    ``size`` is what fstat said: once that many bytes are in, the file is read as it was then,
    without one more read to meet its end (a file on disk is exact; sysfs and procfs report 4096
    or 0 whatever they hold, and are read to their end).
    """
    chunks, got = [], 0
    while got <= cap:
        chunk = os.read(fd, min(max(size + 1 - got, 1 << 16), cap + 1 - got))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
        if got == size:
            break
    return b"".join(chunks) if got <= cap else None
