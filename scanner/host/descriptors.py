"""Open descriptors of a tree's directories: the only way a tree host gets at what it reads.

Each directory is opened by one name inside its parent's descriptor, never through a link
(``O_NOFOLLOW``), so a descriptor stays the directory the walk saw there whatever is renamed or
replaced later; a path handed to the kernel whole would be resolved again, links and all. And the
OSError of a filesystem call, in the words every host uses.
"""

from __future__ import annotations

import errno
import os
from collections import OrderedDict
from typing import Optional, Set, Tuple

from scanner.host import DENIED, MISSING
from scanner.host.walk import SYMLINK_LOOP, Components

#: Directory descriptors kept open: a scan reads one device's attributes one after the other, so a
#: handful would do; more spare re-opening the shared directories above them. Well under the usual
#: limit of 1024 descriptors per process.
OPEN_DIRECTORIES = 128

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
#: A directory inside the tree, never through a link; opened for reading, so that it can be listed.
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
#: Added where reading is denied: O_PATH (Linux) asks only for the right to pass through, as a
#: path walk does, so a directory one may search but not list (mode 0711) is walked as the kernel
#: walks it (and listing it is denied, as the kernel denies it).
_O_PATH = getattr(os, "O_PATH", 0)
#: A file to read: never through a link, never waiting for a writer, never a controlling terminal.
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | _CLOEXEC


def reason_for(exc: OSError) -> str:
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return MISSING
    if exc.errno in (errno.EACCES, errno.EPERM):
        return DENIED
    if exc.errno == errno.ELOOP:
        return SYMLINK_LOOP
    return f"unreadable: {exc.strerror or exc}"


def replaced(exc: OSError) -> bool:
    """An O_NOFOLLOW open met a link or a non-directory where the walk had seen something else."""
    return exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK)  # EMLINK: the BSDs' ELOOP


def open_directory(name: str, dir_fd: Optional[int], flags: int = DIR_FLAGS) -> Tuple[int, bool]:
    """(a directory descriptor, whether it was opened for reading): readable where reading is
    allowed, else one only to pass through."""
    try:
        return os.open(name, flags, dir_fd=dir_fd), True
    except PermissionError:
        if not _O_PATH:
            raise
        return os.open(name, flags | _O_PATH, dir_fd=dir_fd), False


class Directories:
    """Open descriptors of the tree's directories, by in-root components; see the module docstring.

    Why a bounded cache: a scan reads each device's attributes one after the other, so the most
    recently used few serve nearly every read, and the descriptors stay far below the process's
    limit. Used by one thread at a time, like the host that owns it (a descriptor handed out
    stays open until the next call opens another).
    """

    def __init__(self, root: str, limit: int = OPEN_DIRECTORIES):
        self._root = root
        self._root_fd: Optional[int] = None
        self._open: "OrderedDict[Components, int]" = OrderedDict()
        self._limit = limit
        #: the open directories that could not be opened for reading (only to pass through)
        self._unreadable: Set[Components] = set()
        #: the components :meth:`fd` answered last and its answer: the cache's most recent entry
        #: already, so asked again (a device's attributes one after the other) it needs no reordering
        self._last: Optional[Components] = None
        self._last_fd = -1

    def readable(self, parts: Components) -> bool:
        """Was the directory at ``parts``, open now, opened for reading? Not: it can be passed
        through but not listed (mode 0711), and listing it is denied."""
        return parts not in self._unreadable

    def fd(self, parts: Components) -> int:
        """The descriptor of the directory at ``parts``, opened from the nearest open ancestor
        one name at a time (raises OSError: ENOTDIR or ELOOP where a name is no directory)."""
        if parts is self._last or parts == self._last:  # the same tuple, or the same names made anew
            return self._last_fd
        opened = self._open
        fd = opened.get(parts)
        if fd is not None:
            opened.move_to_end(parts)
            self._last, self._last_fd = parts, fd
            return fd
        # Forgotten before anything is opened: opening may close it to make room, and an open that then
        # fails would leave it naming a number the next open reuses for another directory.
        self._last, self._last_fd = None, -1
        depth = len(parts) - 1
        while depth > 0:
            fd = opened.get(parts[:depth])
            if fd is not None:
                opened.move_to_end(parts[:depth])
                break
            depth -= 1
        else:
            fd = self._root_descriptor()
            depth = 0
        for end in range(depth + 1, len(parts) + 1):
            fd, readable = open_directory(parts[end - 1], fd)
            opened[parts[:end]] = fd
            if not readable:
                self._unreadable.add(parts[:end])
            if len(opened) > self._limit:
                (gone, gone_fd) = opened.popitem(last=False)
                self._unreadable.discard(gone)
                os.close(gone_fd)
        if opened.get(parts) == fd:  # kept (a cache of no entries keeps none)
            self._last, self._last_fd = parts, fd
        return fd

    def _root_descriptor(self) -> int:
        if self._root_fd is None:
            # the root is the user's own path: a link to it is followed, as the system would
            self._root_fd, readable = open_directory(self._root, None, DIR_FLAGS & ~os.O_NOFOLLOW)
            if not readable:
                self._unreadable.add(())
        return self._root_fd

    def close(self) -> None:
        fds = list(self._open.values()) + ([self._root_fd] if self._root_fd is not None else [])
        self._open.clear()
        self._unreadable.clear()
        self._last, self._last_fd = None, -1
        self._root_fd = None
        for fd in fds:
            os.close(fd)
