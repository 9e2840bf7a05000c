"""A host read from a directory laid out like ``/`` (``--root DIR``, a captured tree).

Paths are resolved like a chroot: every symlink is followed by hand, an absolute target is taken
relative to the root and ``..`` never climbs above it, so no read can escape the tree -- not even
while the tree changes under the scan. Every step goes through a directory descriptor: each
directory is opened by its name inside its parent's descriptor, never through a link
(``O_NOFOLLOW``), and files are opened the same way inside theirs. A directory swapped for a link
to ``/`` between the walk and the read is then refused, not followed: the walk never hands the
kernel a path of several names to resolve on its own. (``openat2`` with ``RESOLVE_IN_ROOT`` does
this in the kernel; Python has no binding for it, and the walk below is its portable equivalent.)

Only regular files are read: a file's type is checked before it is opened (a FIFO, a terminal or
a watchdog device is never opened at all), it is opened without blocking and without becoming a
controlling terminal, checked again once open, and read with a size cap.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import OrderedDict
from typing import Optional, Tuple

from scanner.host import (
    DENIED,
    DEFAULT_CAP,
    LARGE_CAP,
    MISSING,
    BytesRead,
    Listing,
    Read,
    Stat,
    decode_text,
)
from scanner.inputfile import read_capped

MAX_LINK_HOPS = 40  # the kernel's own limit (ELOOP)
#: Directories one path may go down: sysfs's deepest are some 20; a hostile tree nesting thousands
#: (reached through links) would make every step of the walk longer than the one before.
MAX_DEPTH = 256
TOO_DEEP = f"too deep: over {MAX_DEPTH} directories down"
#: Directory descriptors kept open: a scan reads one device's attributes one after the other, so a
#: handful would do; more spare re-opening the shared directories above them. Well under the usual
#: limit of 1024 descriptors per process.
OPEN_DIRECTORIES = 128
#: The reason when the tree changed between the walk and the read (only a concurrent change does it).
CHANGED = "changed while being read (a directory on the way was replaced)"
NOT_REGULAR = "not a regular file"
A_DIRECTORY = "not a regular file (a directory)"

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
#: A directory inside the tree, never through a link; opened for reading, so that it can be listed.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
#: Added where reading is denied: O_PATH (Linux) asks only for the right to pass through, as a
#: path walk does, so a directory one may search but not list (mode 0711) is walked as the kernel
#: walks it (and listing it is denied, as the kernel denies it).
_O_PATH = getattr(os, "O_PATH", 0)
#: A file to read: never through a link, never waiting for a writer, never a controlling terminal.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | _CLOEXEC

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


def _replaced(exc: OSError) -> bool:
    """An O_NOFOLLOW open met a link or a non-directory where the walk had seen something else."""
    return exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK)  # EMLINK: the BSDs' ELOOP


def _mode_in(dir_fd: int, name: str) -> int:
    """The lstat mode of ``name`` in the directory ``dir_fd`` (raises _Unresolvable)."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except OSError as exc:
        raise _Unresolvable(_reason_for(exc)) from None


def _not_regular(mode: int) -> Optional[str]:
    """Why a file of this mode is not read, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return A_DIRECTORY if stat.S_ISDIR(mode) else NOT_REGULAR


def _open_directory(name: str, dir_fd: Optional[int], flags: int = _DIR_FLAGS) -> int:
    """A directory descriptor, readable where reading is allowed, else one only to pass through."""
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except PermissionError:
        if not _O_PATH:
            raise
        return os.open(name, flags | _O_PATH, dir_fd=dir_fd)


class _Directories:
    """Open descriptors of the tree's directories, by in-root components: the walk's only way in.

    Why descriptors: each one was opened by one name inside its parent's descriptor, never through
    a link, so it stays the directory the walk saw there whatever is renamed or replaced later; a
    path handed to the kernel whole would be resolved again, links and all. Why a bounded cache:
    a scan reads each device's attributes one after the other, so the most recently used few
    serve nearly every read, and the descriptors stay far below the process's limit. Used by one
    thread at a time, like the host that owns it (a descriptor handed out stays open until the
    next call opens another).
    """

    def __init__(self, root: str, limit: int = OPEN_DIRECTORIES):
        self._root = root
        self._root_fd: Optional[int] = None
        self._open: "OrderedDict[Components, int]" = OrderedDict()
        self._limit = limit

    def fd(self, parts: Components) -> int:
        """The descriptor of the directory at ``parts``, opened from the nearest open ancestor
        one name at a time (raises OSError: ENOTDIR or ELOOP where a name is no directory)."""
        opened = self._open
        fd = opened.get(parts)
        if fd is not None:
            opened.move_to_end(parts)
            return fd
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
            fd = _open_directory(parts[end - 1], fd)
            opened[parts[:end]] = fd
            if len(opened) > self._limit:
                os.close(opened.popitem(last=False)[1])
        return fd

    def _root_descriptor(self) -> int:
        if self._root_fd is None:
            # the root is the user's own path: a link to it is followed, as the system would
            self._root_fd = _open_directory(self._root, None, _DIR_FLAGS & ~os.O_NOFOLLOW)
        return self._root_fd

    def close(self) -> None:
        fds = list(self._open.values()) + ([self._root_fd] if self._root_fd is not None else [])
        self._open.clear()
        self._root_fd = None
        for fd in fds:
            os.close(fd)


class TreeHost:
    """Read-only view of a root directory; see the module docstring for the rules."""

    source = "root"
    machine: Optional[str] = None  # only the live host knows its architecture without reading
    #: components -> lstat mode of the directories met so far: a walk would lstat each component
    #: again, though a scan passes through the same few directories (``sys/bus/pci/drivers/...``,
    #: ``sys/devices/pci0000:00``) thousands of times. Links, files and failures are not kept: a
    #: link is walked about once (``_dir_state`` keeps walked directories), a file read once.
    #: A hint only: what is read is always reached through :class:`_Directories`.
    _known: Optional[dict] = None
    _dirs: Optional[_Directories] = None  # a snapshot host has no directories behind it

    def __init__(self, root: str, kernel_log_file: Optional[str] = None):
        self.root = os.path.abspath(root)
        self.kernel_log_file = kernel_log_file
        self._dir_cache: dict = {}
        self._dirs = _Directories(self.root)

    def close(self) -> None:
        """Close the tree's directory descriptors (a later read opens them again)."""
        if self._dirs is not None:
            self._dirs.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # at interpreter exit os may be gone; the descriptors go with the process
            pass

    # -- descriptors: every filesystem call below goes through one ------------------------------
    def _dir_fd(self, parts: Components) -> int:
        """The descriptor of a directory the walk went through (raises _Unresolvable)."""
        try:
            return self._dirs.fd(parts)
        except OSError as exc:  # ENOTDIR, ELOOP: what the walk saw as a directory no longer is one
            raise _Unresolvable(CHANGED if _replaced(exc) else _reason_for(exc)) from None

    # The two filesystem primitives the walk needs; a snapshot (scanner/host/snapshot.py) answers
    # them from recorded entries, so both backends share one walk and resolve paths identically.
    # Here each is one system call inside the parent's descriptor.
    def _lstat_mode(self, parts: Components) -> int:
        if not parts:
            return stat.S_IFDIR  # the root
        return _mode_in(self._dir_fd(parts[:-1]), parts[-1])

    def _readlink(self, parts: Components) -> str:
        dir_fd = self._dir_fd(parts[:-1])
        try:
            return os.readlink(parts[-1], dir_fd=dir_fd)
        except OSError as exc:
            raise _Unresolvable(_reason_for(exc)) from None

    # -- path resolution --------------------------------------------------------------
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
            if len(key) > MAX_DEPTH:
                raise _Unresolvable(TOO_DEEP)
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
        same reason. What is kept are names, never a way in: a read still opens every directory
        through :class:`_Directories`, so a stale answer can fail a read but not lead it out.
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
        """The directory ``path`` leads to, to go on from (raises _Unresolvable)."""
        parts, _, on_file = self._dir_state(path)
        if on_file:
            raise _Unresolvable(MISSING)  # a path through a regular file, as the kernel's ENOTDIR
        return parts

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
            return stat.S_ISDIR(self._lstat_mode(self._resolve(path)))
        except _Unresolvable:
            return False

    def _regular_file(self, path: str) -> Tuple[int, str]:
        """(directory descriptor, name) of the regular file ``path`` names, its type checked
        before any open (raises _Unresolvable).

        A plain last name is looked up straight in its resolved directory (most of a scan's
        reads): only a link there costs the walk of the whole path.
        """
        clean = "/" + path.strip("/")
        parent, _, leaf = clean.rpartition("/")
        mode = stat.S_IFLNK
        if leaf not in ("", ".", ".."):
            dir_fd = self._dir_fd(self._resolve_dir(parent) if parent else ())
            mode = _mode_in(dir_fd, leaf)
        if stat.S_ISLNK(mode):
            parts = self._resolve(path)
            if not parts:
                raise _Unresolvable(A_DIRECTORY)  # the root itself
            dir_fd, leaf = self._dir_fd(parts[:-1]), parts[-1]
            mode = _mode_in(dir_fd, leaf)
        why = _not_regular(mode)
        if why:
            raise _Unresolvable(why)
        return dir_fd, leaf

    def _open(self, path: str) -> Tuple[int, int]:
        """(descriptor, size) of the regular file ``path``; raises _Unresolvable.

        The type is checked again once open: only a concurrent swap can make it differ, and then
        the file is refused without a single byte read (O_NONBLOCK and O_NOCTTY made the open
        itself harmless; only someone able to create device nodes could swap one in).
        """
        dir_fd, name = self._regular_file(path)
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            raise _Unresolvable(CHANGED if exc.errno in (errno.ELOOP, errno.EMLINK) else _reason_for(exc)) from None
        try:
            st = os.fstat(fd)
        except OSError as exc:
            os.close(fd)
            raise _Unresolvable(_reason_for(exc)) from None
        why = _not_regular(st.st_mode)
        if why:
            os.close(fd)
            raise _Unresolvable(why)
        return fd, st.st_size

    def read_bytes(self, path: str, cap: int = DEFAULT_CAP) -> BytesRead:
        try:
            fd, size = self._open(path)
        except _Unresolvable as exc:
            return BytesRead(path, reason=exc.reason)
        try:
            data = read_capped(fd, cap, size)
        except OSError as exc:
            return BytesRead(path, reason=_reason_for(exc))
        finally:
            os.close(fd)
        if data is None:
            return BytesRead(path, reason=f"too large: over the {cap}-byte cap")
        return BytesRead(path, data)

    def read(self, path: str, cap: int = DEFAULT_CAP, lenient: bool = False) -> Read:
        raw = self.read_bytes(path, cap)
        if not raw.ok:
            return Read(path, reason=raw.reason)
        return decode_text(path, raw.data, lenient=lenient)

    def initramfs(self, path: str):
        """What the initramfs image at ``path`` holds (:class:`scanner.host.initramfs.InitramfsRead`):
        read as a stream through the same safe open as every file, never held whole in memory."""
        from scanner.host.initramfs import MAX_IMAGE, InitramfsRead, read_image

        try:
            fd, size = self._open(path)
        except _Unresolvable as exc:
            return InitramfsRead(path, reason=exc.reason)
        try:
            if size > MAX_IMAGE:
                return InitramfsRead(path, reason=f"too large: over the {MAX_IMAGE}-byte cap")
            return read_image(path, _chunks_of(fd, MAX_IMAGE))
        finally:
            os.close(fd)

    def listdir(self, path: str) -> Listing:
        try:
            parts = self._resolve(path)
        except _Unresolvable as exc:
            return Listing(path, reason=exc.reason)
        try:
            return Listing(path, tuple(sorted(os.listdir(self._dirs.fd(parts)))))
        except OSError as exc:
            return Listing(path, reason=self._listing_failure(parts, exc))

    def stat(self, path: str) -> Stat:
        """Owner, group and permission bits of what ``path`` leads to (every link followed).

        Read with ``lstat`` inside the parent's descriptor, like every step of the walk: a device
        node is looked at, never opened.
        """
        try:
            parts = self._resolve(path)
            found = self._owner_and_mode(parts)
        except _Unresolvable as exc:
            return Stat(path, reason=exc.reason)
        return Stat(path, found.st_uid, found.st_gid, stat.S_IMODE(found.st_mode))

    def _owner_and_mode(self, parts: Components) -> os.stat_result:
        dir_fd = self._dir_fd(parts[:-1] if parts else ())
        try:
            if not parts:
                return os.fstat(dir_fd)
            return os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False)
        except OSError as exc:
            raise _Unresolvable(_reason_for(exc)) from None

    def _listing_failure(self, parts: Components, exc: OSError) -> str:
        """Why the directory at ``parts`` (the walk's end, links followed) could not be listed."""
        if exc.errno == errno.EBADF:  # a directory open only to pass through: reading it is denied
            return DENIED
        if not _replaced(exc):
            return _reason_for(exc)
        try:
            mode = self._lstat_mode(parts)  # a failure above the directory itself is the walk's
        except _Unresolvable as gone:
            return gone.reason
        return "not a directory" if not (stat.S_ISLNK(mode) or stat.S_ISDIR(mode)) else CHANGED

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


#: What every host's tree has (the collector records both): a directory with neither is no host's
#: tree -- an empty folder, the parent of the tree, a typo -- and a scan of it would give a verdict
#: about nothing.
HOST_SIGNS = ("/proc/cmdline", "/sys/bus/pci/devices")


def _chunks_of(fd: int, cap: int, size: int = 1 << 20):
    """The open file's bytes a chunk at a time, up to ``cap`` (a file that grows past it is cut there)."""
    got = 0
    while got < cap:
        chunk = os.read(fd, min(size, cap - got))
        if not chunk:
            return
        got += len(chunk)
        yield chunk


def missing_host_signs(root: str) -> Optional[str]:
    """What the tree at ``root`` lacks to be taken for a host's, or None when it has a sign of one.

    A sign that exists but cannot be read (permission denied) still counts: the scan says why.
    """
    host = TreeHost(root)
    try:
        if any(host.resolve(path).reason != MISSING for path in HOST_SIGNS):
            return None
    finally:
        host.close()
    return "it has neither " + " nor ".join(HOST_SIGNS)


def read_outside_file(path: str, cap: int = LARGE_CAP) -> Read:
    """Read a file named on the command line (``--kernel-log``), leniently decoded.

    The file is the user's own, on the real filesystem: a symlink to it is followed as the
    system would (``realpath``), not confined to the link's directory like a tree's paths.
    """
    real = os.path.realpath(path)
    host = TreeHost(os.path.dirname(real))
    try:
        got = host.read(os.path.basename(real), cap=cap, lenient=True)
    finally:
        host.close()
    return Read(path, got.text, got.reason)
