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
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)

Components = Tuple[str, ...]
#: Where a walk stands: (components, links followed so far, ended on a non-directory).
_State = Tuple[Components, int, bool]


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
    #: components -> lstat mode of the directories met so far: a walk would lstat each component
    #: again, though a scan passes through the same few directories (``sys/bus/pci/drivers/...``,
    #: ``sys/devices/pci0000:00``) thousands of times. Links, files and failures are not kept: a
    #: link is walked about once (``_dir_state`` keeps walked directories), a file read once.
    _known: Optional[dict] = None

    def __init__(self, root: str, kernel_log_file: Optional[str] = None):
        self.root = os.path.abspath(root)
        self.kernel_log_file = kernel_log_file
        self._dir_cache: dict = {}

    # -- path resolution --------------------------------------------------------------
    def _os_path(self, parts: Components) -> str:
        # os.path.join, minus its cost: every part is one plain name (never empty, never with "/")
        if not parts:
            return self.root
        return (self.root if self.root.endswith("/") else self.root + "/") + "/".join(parts)

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

    def _walk(self, pending: list, resolved: Components, follow_last: bool) -> Components:
        return self._advance(pending, resolved, 0, follow_last)[0]

    def _advance(self, pending: list, resolved: Components, hops: int, follow_last: bool) -> _State:
        """The walk: (components, links followed so far, whether it ended on a non-directory).

        ``hops`` and the last flag let :meth:`_dir_state` go on from a walked prefix exactly where
        a walk of the whole path would be at that point (see there).
        """
        known = self._known
        if known is None:
            known = self._known = {}
        pending = pending[::-1]  # a stack: the next name last
        on_file = False
        while pending:
            name = pending.pop()
            on_file = False
            if name in ("", "."):
                continue
            if name == "..":
                resolved = resolved[:-1]
                continue
            key = resolved + (name,)
            mode = known.get(key)
            if mode is None:
                mode = self._lstat_mode(key)
                if stat.S_ISDIR(mode):
                    known[key] = mode
            if stat.S_ISLNK(mode) and (pending or follow_last):
                hops += 1
                if hops > MAX_LINK_HOPS:
                    raise _Unresolvable("symlink loop")
                target = self._readlink(key)
                if target.startswith("/"):
                    resolved = ()
                pending.extend(reversed(target.split("/")))
                continue
            if not stat.S_ISDIR(mode) and not stat.S_ISLNK(mode):
                if pending:
                    raise _Unresolvable(MISSING)  # a path through a regular file
                on_file = True
            resolved = key
        return resolved, hops, on_file

    def _dir_state(self, path: str) -> _State:
        """What ``_advance(path.split("/"), (), 0, True)`` returns, one component at a time from
        the longest prefix already walked (raises _Unresolvable).

        Why: a scan reads some twenty attributes of each of thousands of devices under the same
        few directories; walking each directory from the root again (an ``lstat`` per component,
        a ``readlink`` per link) was most of a scan's time. The answer is the same as the whole
        walk's: after a prefix, a whole walk is in the very state the prefix's walk ended in (the
        same components, the same hop count toward the loop limit), except that a prefix ending
        on a regular file is "missing" as soon as anything follows it -- the flag in the state.
        A failure is kept too: a prefix that cannot be walked fails every path under it with the
        same reason.
        """
        cache = self._dir_cache
        chain = []  # (path, name): from ``path`` up to the first prefix already walked
        while True:
            state = cache.get(path)
            if state is not None:
                break
            if not path:
                state = ((), 0, False)  # the root
                break
            parent, _, name = path.rpartition("/")
            chain.append((path, name))
            path = parent
        for path, name in reversed(chain):
            if isinstance(state, str):
                break
            if state[2]:
                state = MISSING  # a path through a regular file
            else:
                try:
                    state = self._advance([name], state[0], state[1], True)
                except _Unresolvable as exc:
                    state = exc.reason
            cache[path] = state
        if isinstance(state, str):
            raise _Unresolvable(state)
        return state

    def _resolve_dir(self, path: str) -> Components:
        return self._dir_state(path)[0]

    def _resolve(self, path: str, follow_last: bool = True) -> Components:
        """Components of ``path`` inside the root, every link followed (raises _Unresolvable)."""
        path = "/" + path.strip("/")
        parent, _, leaf = path.rpartition("/")
        base = self._resolve_dir(parent) if parent else ()
        return self._walk([leaf], base, follow_last)

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

    def _open(self, path: str) -> int:
        """A descriptor for ``path``, opened without following a link, without blocking.

        Raises _Unresolvable (the walk's reason) or OSError (the open's). A plain last name is
        opened straight in its resolved directory, without an lstat first (most of a scan's
        reads, one system call less each): the open refuses a link itself (O_NOFOLLOW), which is
        then walked like any other, and a missing or unreachable file fails the open with the very
        errno, hence the reason, the lstat would have given.
        """
        clean = "/" + path.strip("/")
        parent, _, leaf = clean.rpartition("/")
        if leaf not in ("", ".", ".."):
            base = self._resolve_dir(parent) if parent else ()
            try:
                return os.open(self._os_path(base + (leaf,)), _OPEN_FLAGS)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.EMLINK):  # EMLINK: the BSDs' word for it
                    raise
        return os.open(self._os_path(self._resolve(path)), _OPEN_FLAGS)

    def read_bytes(self, path: str, cap: int = DEFAULT_CAP) -> BytesRead:
        try:
            fd = self._open(path)
        except _Unresolvable as exc:
            return BytesRead(path, reason=exc.reason)
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
