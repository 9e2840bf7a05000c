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
from typing import Optional, Tuple

from scanner.host import (
    DEFAULT_CAP,
    DENIED,
    LARGE_CAP,
    MISSING,
    BytesRead,
    Listing,
    Read,
    Stat,
    decode_text,
)
from scanner.host.descriptors import (
    FILE_FLAGS,
    OPEN_DIRECTORIES,
    Directories,
    reason_for,
    replaced,
)
from scanner.host.walk import (  # noqa: F401  (MAX_*, TOO_DEEP: the limits, named where the reads are)
    MAX_DEPTH,
    MAX_LINK_HOPS,
    TOO_DEEP,
    Components,
    ConfinedWalk,
    _Unresolvable,
)
from scanner.host.inputfile import read_capped

__all__ = ["CHANGED", "MAX_DEPTH", "MAX_LINK_HOPS", "MISSING", "OPEN_DIRECTORIES", "TOO_DEEP", "Components",
           "TreeHost", "lacks_host_signs", "missing_host_signs", "read_outside_file"]

#: The reason when the tree changed between the walk and the read (only a concurrent change does it).
CHANGED = "changed while being read (a directory on the way was replaced)"
NOT_REGULAR = "not a regular file"
A_DIRECTORY = "not a regular file (a directory)"


_FORMAT, _LINK, _REGULAR = stat.S_IFMT(0o170000), stat.S_IFLNK, stat.S_IFREG  # the type bits of a mode, tested inline


def _mode_in(dir_fd: int, name: str) -> int:
    """The lstat mode of ``name`` in the directory ``dir_fd`` (raises _Unresolvable)."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except OSError as exc:
        raise _Unresolvable(reason_for(exc)) from None


def _not_regular(mode: int) -> Optional[str]:
    """Why a file of this mode is not read, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return A_DIRECTORY if stat.S_ISDIR(mode) else NOT_REGULAR


class TreeHost(ConfinedWalk):
    """Read-only view of a root directory; see the module docstring for the rules.

    Paths are named by the walk (:class:`~scanner.host.walk.ConfinedWalk`), whose two
    primitives are answered here inside the parent's descriptor; what is read is always reached
    through :class:`~scanner.host.descriptors.Directories`.
    """

    source = "root"
    machine: Optional[str] = None  # only the live host knows its architecture without reading
    _dirs: Optional[Directories] = None  # a snapshot host has no directories behind it

    def __init__(self, root: str, kernel_log_file: Optional[str] = None):
        self.root = os.path.abspath(root)
        self.kernel_log_file = kernel_log_file
        self._dir_cache: dict = {}
        self._dirs = Directories(self.root)

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
            raise _Unresolvable(CHANGED if replaced(exc) else reason_for(exc)) from None

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
            raise _Unresolvable(reason_for(exc)) from None

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
        parent, _, leaf = ("/" + path.strip("/")).rpartition("/")
        mode = _LINK
        if leaf not in ("", ".", ".."):
            dir_fd = self._dir_fd(self._resolve_dir(parent) if parent else ())
            mode = _mode_in(dir_fd, leaf)
        if mode & _FORMAT == _LINK:
            parts = self._resolve(path)
            if not parts:
                raise _Unresolvable(A_DIRECTORY)  # the root itself
            dir_fd, leaf = self._dir_fd(parts[:-1]), parts[-1]
            mode = _mode_in(dir_fd, leaf)
        if mode & _FORMAT != _REGULAR:
            raise _Unresolvable(_not_regular(mode))
        return dir_fd, leaf

    def _open(self, path: str) -> Tuple[int, int]:
        """(descriptor, size) of the regular file ``path``; raises _Unresolvable.

        The type is checked again once open: only a concurrent swap can make it differ, and then
        the file is refused without a single byte read (O_NONBLOCK and O_NOCTTY made the open
        itself harmless; only someone able to create device nodes could swap one in).
        """
        dir_fd, name = self._regular_file(path)
        try:
            fd = os.open(name, FILE_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            raise _Unresolvable(CHANGED if exc.errno in (errno.ELOOP, errno.EMLINK) else reason_for(exc)) from None
        try:
            st = os.fstat(fd)
        except OSError as exc:
            os.close(fd)
            raise _Unresolvable(reason_for(exc)) from None
        if st.st_mode & _FORMAT != _REGULAR:
            os.close(fd)
            raise _Unresolvable(_not_regular(st.st_mode))
        return fd, st.st_size

    def read_bytes(self, path: str, cap: int = DEFAULT_CAP) -> BytesRead:
        try:
            fd, size = self._open(path)
        except _Unresolvable as exc:
            return BytesRead(path, reason=exc.reason)
        try:
            data = read_capped(fd, cap, size)
        except OSError as exc:
            return BytesRead(path, reason=reason_for(exc))
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

    def lists(self, path: str, name: str) -> bool:
        """Does the directory at ``path`` list ``name``? The answer of ``name in listdir(path).entries()``.

        Why not the listing itself: to learn whether a device has a ``driver`` link or a
        ``pci_bus`` directory, listing its directory takes eight system calls, and looking the one
        name up in it one. The answers agree: a directory that cannot be walked to or opened lists
        nothing, nor does one open only to pass through (listing it is denied); in a directory open
        for reading, a name that can be looked up is listed, and one that is not there is not.
        Anything else the look-up meets (a directory one may read but not search, a name it cannot
        take) is answered by the listing itself. A link found is followed at once, as a read
        through it would follow it (:meth:`_keep_link`): a device's ``driver`` is asked whether it is
        listed, then where it leads, and its type is looked up once for both.
        """
        if name in ("", ".", "..") or "/" in name or "\0" in name:
            return name in self.listdir(path).entries()
        try:
            parts = self._resolve(path)
            dir_fd = self._dirs.fd(parts)
        except (_Unresolvable, OSError):
            return False  # the listing fails the same way
        if not self._dirs.readable(parts):
            return False
        try:
            mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
        except FileNotFoundError:
            return False
        except OSError:
            return name in self.listdir(path).entries()
        if mode & _FORMAT == _LINK:
            self._keep_link(parts + (name,))
        return True

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
            raise _Unresolvable(reason_for(exc)) from None

    def _listing_failure(self, parts: Components, exc: OSError) -> str:
        """Why the directory at ``parts`` (the walk's end, links followed) could not be listed."""
        if exc.errno == errno.EBADF:  # a directory open only to pass through: reading it is denied
            return DENIED
        if not replaced(exc):
            return reason_for(exc)
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
    """What the tree at ``root`` lacks to be taken for a host's, or None when it has a sign of one."""
    host = TreeHost(root)
    try:
        return lacks_host_signs(host)
    finally:
        host.close()


def lacks_host_signs(host, absent: Tuple[str, ...] = (MISSING,)) -> Optional[str]:
    """What ``host`` (a tree's, a snapshot's) lacks to be taken for a host's, or None when it has a sign
    of one. ``absent``: the reasons a path is not there (a snapshot adds "not collected").

    A sign that exists but cannot be read (permission denied) still counts: the scan says why.
    """
    if any(host.resolve(path).reason not in absent for path in HOST_SIGNS):
        return None
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
