"""Output files written whole or not at all.

Why: a remediation script cut short by a full disk stops in the middle of a block that a root
operator then runs; a truncated JSON report, JUnit file or snapshot breaks whatever reads it next,
and an older complete file overwritten by half a new one is lost too. So a regular file is written
to a temporary file beside it (same directory, same file system), flushed to disk, given its mode,
and only then renamed over the old one: a reader sees the old file or the new one, never a part.
When anything fails (ENOSPC, EFBIG, EIO, a permission...) the temporary file is removed, the old
file is left as it was, and :class:`OutputError` says what and why in one line.

The text may also come as an iterable of pieces (a report of thousands of findings, made one
finding at a time): they are encoded and written in blocks as they come, into the same temporary
file, so the whole text is never held. Whatever stops the pieces midway -- the code making them
raises, an interrupt -- removes the temporary file as a failed write does, and is raised as it was.

What is not a regular file -- a device (``/dev/null``, ``/dev/full``), a FIFO, a file descriptor's
link (``/dev/stdout``, ``/proc/self/fd/1``) -- is written in place: renaming over it would replace
a device node (as root) or cut a link to a descriptor. A symlink to a regular file has the file it
points to replaced, and stays a link.

Standard library only. (``scanner/collector.py`` keeps its own small copy of these rules: it must
run alone on a host where nothing of vfio-scan is installed.)
"""

from __future__ import annotations

import _thread  # threading.Lock is _thread.allocate_lock: threading itself is not needed
import os
import stat
from typing import Iterable, Iterator, Union

from scanner.base.lazyre import lazy_compile

#: a file descriptor's magic link: writing "through" it must reach the descriptor, not replace a file
_FD_LINK = lazy_compile(r"^/(?:proc/[^/]+/fd|dev/fd)/|^/dev/std(?:in|out|err)$")

_umask_lock = _thread.allocate_lock()

#: pieces of text are joined into blocks of about this many characters before being encoded and written
BLOCK_CHARS = 1 << 20


class OutputError(Exception):
    """An output that could not be written: ``cannot write PATH: REASON`` (``PATH`` ``-`` is stdout)."""

    def __init__(self, path: str, reason: str, errno: int | None = None):
        super().__init__(f"cannot write {'to stdout' if path == '-' else path}: {reason}")
        self.path, self.reason, self.errno = path, reason, errno


def write_atomically(path: str, data: Union[str, bytes, bytearray, memoryview, Iterable[str]]) -> None:
    """Write ``data`` (text is UTF-8; an iterable of text pieces is written as it comes) to ``path``
    whole or not at all; raises :class:`OutputError`."""
    if isinstance(data, str):
        data = [data.encode("utf-8")]
    elif isinstance(data, (bytes, bytearray, memoryview)):
        data = [data]
    else:
        data = (block.encode("utf-8") for block in text_blocks(data))
    try:
        if _in_place(path):
            _write_in_place(path, data)
        else:
            _replace(os.path.realpath(path), data)
    except OSError as exc:
        raise OutputError(path, exc.strerror or str(exc), exc.errno) from exc


def text_blocks(pieces: Iterable[str], size: int = 0) -> Iterator[str]:
    """The pieces joined into blocks of about ``size`` characters (default :data:`BLOCK_CHARS`): a write per
    block, not per piece."""
    size = size or BLOCK_CHARS
    batch, held = [], 0
    for piece in pieces:
        batch.append(piece)
        held += len(piece)
        if held >= size:
            yield "".join(batch)
            batch, held = [], 0
    if batch:
        yield "".join(batch)


def _in_place(path: str) -> bool:
    """True for what must not be renamed over: a device, a FIFO, a socket, a descriptor's link."""
    where = os.path.abspath(path)
    for _ in range(40):  # the chain of links of the last component, as far as the kernel would follow it
        if _FD_LINK.match(where):
            return True
        if not os.path.islink(where):
            break
        where = os.path.normpath(os.path.join(os.path.dirname(where), os.readlink(where)))
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:  # a new file (or a dangling link: its target is created, as open() would)
        return False


def _write_in_place(path: str, blocks: Iterable[bytes]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0))
    try:
        _write_all(fd, blocks)
    finally:
        os.close(fd)


def _replace(target: str, blocks: Iterable[bytes]) -> None:
    import tempfile  # only here: it imports shutil and random, which a scan to stdout does not need

    directory, name = os.path.split(target)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    fd, temp = tempfile.mkstemp(dir=directory, prefix="." + name + ".", suffix=".tmp")
    try:
        try:
            _write_all(fd, blocks)
            os.fsync(fd)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)  # close() reports delayed write errors too (NFS): still before the rename
        os.replace(temp, target)
    except BaseException:  # OSError, an interrupt or a failing piece mid-write: no temporary file is left behind
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    _sync_directory(directory)


def _write_all(fd: int, blocks: Iterable[bytes]) -> None:
    for raw in blocks:
        view = memoryview(raw)
        while view:
            view = view[os.write(fd, view):]


def _sync_directory(directory: str) -> None:
    """Make the rename itself durable; a file system that cannot sync a directory is not an error."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    """The process umask, for a new file's mode (what ``open()`` would have given it).

    It can only be read by setting it: set to 0o077 and restored at once, under a lock so that two
    threads of this module (fleet saves snapshots from several) never read each other's 0o077.
    Other code creating a file in that instant would get a stricter mode, never a looser one.
    """
    with _umask_lock:
        old = os.umask(0o077)
        os.umask(old)
    return old
