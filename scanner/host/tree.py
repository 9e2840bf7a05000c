"""A host read from a directory laid out like ``/`` (``--root DIR``, a captured tree).

Paths are resolved like a chroot: every symlink is followed by hand, an absolute target is taken
relative to the root and ``..`` never climbs above it, so no read can escape the tree. Files are
opened without following links, without blocking (a FIFO cannot hang a scan), and read with a
size cap.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Optional, Tuple

from scanner.host import (
    DENIED,
    DEFAULT_CAP,
    LARGE_CAP,
    MISSING,
    BytesRead,
    Listing,
    Read,
    decode_text,
)

MAX_LINK_HOPS = 40  # the kernel's own limit (ELOOP)

Components = Tuple[str, ...]


class _Unresolvable(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _reason_for(exc: OSError) -> str:
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return MISSING
    if exc.errno in (errno.EACCES, errno.EPERM):
        return DENIED
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    return f"unreadable: {exc.strerror or exc}"


class TreeHost:
    """Read-only view of a root directory; see the module docstring for the rules."""

    source = "root"
    machine: Optional[str] = None  # only the live host knows its architecture without reading

    def __init__(self, root: str, kernel_log_file: Optional[str] = None):
        self.root = os.path.abspath(root)
        self.kernel_log_file = kernel_log_file
        self._dir_cache: dict = {}

    # -- path resolution --------------------------------------------------------------
    def _os_path(self, parts: Components) -> str:
        return os.path.join(self.root, *parts) if parts else self.root

    # The two filesystem primitives the walk needs; a snapshot (scanner/host/snapshot.py) answers
    # them from recorded entries, so both backends share one walk and resolve paths identically.
    def _lstat_mode(self, parts: Components) -> int:
        try:
            return os.lstat(self._os_path(parts)).st_mode
        except OSError as exc:
            raise _Unresolvable(_reason_for(exc)) from None

    def _readlink(self, parts: Components) -> str:
        try:
            return os.readlink(self._os_path(parts))
        except OSError as exc:
            raise _Unresolvable(_reason_for(exc)) from None

    def _walk(self, pending: list, resolved: list, follow_last: bool) -> Components:
        hops = 0
        while pending:
            name = pending.pop(0)
            if name in ("", "."):
                continue
            if name == "..":
                if resolved:
                    resolved.pop()
                continue
            candidate = resolved + [name]
            mode = self._lstat_mode(tuple(candidate))
            if stat.S_ISLNK(mode) and (pending or follow_last):
                hops += 1
                if hops > MAX_LINK_HOPS:
                    raise _Unresolvable("symlink loop")
                target = self._readlink(tuple(candidate))
                if target.startswith("/"):
                    resolved = []
                pending[:0] = target.split("/")
                continue
            if pending and not stat.S_ISDIR(mode) and not stat.S_ISLNK(mode):
                raise _Unresolvable(MISSING)  # a path through a regular file
            resolved = candidate
        return tuple(resolved)

    def _resolve_dir(self, path: str) -> Components:
        cached = self._dir_cache.get(path)
        if cached is None:
            cached = self._walk(path.split("/"), [], follow_last=True)
            self._dir_cache[path] = cached
        return cached

    def _resolve(self, path: str, follow_last: bool = True) -> Components:
        """Components of ``path`` inside the root, every link followed (raises _Unresolvable)."""
        path = "/" + path.strip("/")
        parent, _, leaf = path.rpartition("/")
        base = self._resolve_dir(parent) if parent else ()
        return self._walk([leaf], list(base), follow_last)

    # -- the read interface -----------------------------------------------------------
    def resolve(self, path: str) -> Read:
        """The canonical in-root path of ``path`` with every link followed (``/sys/...``)."""
        try:
            return Read(path, "/" + "/".join(self._resolve(path)))
        except _Unresolvable as exc:
            return Read(path, reason=exc.reason)

    def exists(self, path: str) -> bool:
        return self.resolve(path).ok

    def is_dir(self, path: str) -> bool:
        try:
            return os.path.isdir(self._os_path(self._resolve(path)))
        except _Unresolvable:
            return False

    def read_bytes(self, path: str, cap: int = DEFAULT_CAP) -> BytesRead:
        try:
            real = self._os_path(self._resolve(path))
        except _Unresolvable as exc:
            return BytesRead(path, reason=exc.reason)
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            if exc.errno == errno.EISDIR:
                return BytesRead(path, reason="not a regular file (a directory)")
            return BytesRead(path, reason=_reason_for(exc))
        try:
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode):
                return BytesRead(path, reason="not a regular file (a directory)")
            if not stat.S_ISREG(mode):
                return BytesRead(path, reason="not a regular file")
            chunks, size = [], 0
            while size <= cap:
                chunk = os.read(fd, min(1 << 16, cap + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            if size > cap:
                return BytesRead(path, reason=f"too large: over the {cap}-byte cap")
            return BytesRead(path, b"".join(chunks))
        except OSError as exc:
            return BytesRead(path, reason=_reason_for(exc))
        finally:
            os.close(fd)

    def read(self, path: str, cap: int = DEFAULT_CAP, lenient: bool = False) -> Read:
        raw = self.read_bytes(path, cap)
        if not raw.ok:
            return Read(path, reason=raw.reason)
        return decode_text(path, raw.data, lenient=lenient)

    def listdir(self, path: str) -> Listing:
        try:
            real = self._os_path(self._resolve(path))
        except _Unresolvable as exc:
            return Listing(path, reason=exc.reason)
        try:
            return Listing(path, tuple(sorted(os.listdir(real))))
        except NotADirectoryError:
            return Listing(path, reason="not a directory")
        except OSError as exc:
            return Listing(path, reason=_reason_for(exc))

    # -- host identity and the kernel log -----------------------------------------------
    def hostname(self) -> str:
        for path in ("/proc/sys/kernel/hostname", "/etc/hostname"):
            got = self.read(path)
            if got.ok and got.text.strip():
                return got.text.strip().splitlines()[0]
        return os.path.basename(self.root.rstrip("/")) or "root"

    def kernel_log(self) -> Read:
        """The kernel log: ``--kernel-log FILE`` if given, else the tree's ``var/log/dmesg``."""
        if self.kernel_log_file:
            return read_outside_file(self.kernel_log_file)
        got = self.read("/var/log/dmesg", cap=LARGE_CAP, lenient=True)
        if got.ok:
            return got
        return Read("/var/log/dmesg", reason=f"no kernel log in the tree (/var/log/dmesg: {got.reason}); "
                                            "give one with --kernel-log FILE")

    def describe(self) -> str:
        return f"tree {self.root}"


def read_outside_file(path: str, cap: int = LARGE_CAP) -> Read:
    """Read a file named on the command line (``--kernel-log``), leniently decoded.

    The file is the user's own, on the real filesystem: a symlink to it is followed as the
    system would (``realpath``), not confined to the link's directory like a tree's paths.
    """
    real = os.path.realpath(path)
    got = TreeHost(os.path.dirname(real)).read(os.path.basename(real), cap=cap, lenient=True)
    return Read(path, got.text, got.reason)
