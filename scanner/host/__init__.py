"""The Host layer: the only code that touches the filesystem or runs a command.

Every read answers with the value *or the reason there is none* (missing, permission denied,
garbled, too large, ...), never an exception: a scanner runs on broken hosts by definition.
Backends: :class:`~scanner.host.tree.TreeHost` (a directory laid out like ``/``) and
:class:`~scanner.host.live.LiveHost` (this machine). Nothing here ever writes.

May import: scanner.base.
"""

from __future__ import annotations

from typing import Optional, Tuple

from scanner.base.record import record

#: Default cap for one file: sysfs and procfs files are tiny; a larger file is suspect.
DEFAULT_CAP = 1 << 20
#: Kernel logs and kernel configs are legitimately larger.
LARGE_CAP = 16 << 20

MISSING = "missing"
DENIED = "permission denied"


@record(frozen=True)
class Read:
    """The answer to one read: ``text`` when it worked, else ``reason`` says why not."""

    path: str
    text: Optional[str] = None
    reason: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.text is not None

    @property
    def missing(self) -> bool:
        return self.reason == MISSING

    def value(self, default: str = "") -> str:
        return self.text if self.text is not None else default

    def describe(self) -> str:
        """``path: reason`` for messages when the read failed."""
        return f"{self.path}: {self.reason}" if self.reason else self.path


@record(frozen=True)
class BytesRead:
    """The answer to one binary read: ``data`` when it worked, else ``reason`` says why not."""

    path: str
    data: Optional[bytes] = None
    reason: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.data is not None


@record(frozen=True)
class Stat:
    """Owner, group and permission bits of a path (links followed), or the reason there are none.

    What decides whether a user may open a device node (``/dev/vfio/1``): the scan never opens
    one, it judges the mode bits against the user's uid and groups.
    """

    path: str
    uid: Optional[int] = None
    gid: Optional[int] = None
    mode: Optional[int] = None  # the permission bits (``stat.S_IMODE``), e.g. 0o660
    reason: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.mode is not None

    @property
    def missing(self) -> bool:
        return self.reason == MISSING

    def describe(self) -> str:
        """``0660 uid 0 gid 36`` for evidence, or the reason there is none."""
        if not self.ok:
            return f"<{self.reason}>"
        return f"mode {self.mode:04o}, owner uid {self.uid}, group gid {self.gid}"


@record(frozen=True)
class Listing:
    """Names in a directory, sorted, or the reason they could not be listed."""

    path: str
    names: Optional[Tuple[str, ...]] = None
    reason: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.names is not None

    @property
    def missing(self) -> bool:
        return self.reason == MISSING

    def entries(self) -> Tuple[str, ...]:
        return self.names or ()


def decode_text(path: str, data: bytes, lenient: bool = False) -> Read:
    """Bytes to text; NUL bytes or invalid UTF-8 mean the file is garbled (unless lenient).

    Kernel logs are decoded leniently: one odd byte in a device name must not hide the log.
    """
    if lenient:
        return Read(path, data.replace(b"\0", b"").decode("utf-8", "replace"))
    if b"\0" in data:
        return Read(path, reason=f"garbled: binary data (NUL byte at offset {data.index(0)})")
    try:
        return Read(path, data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return Read(path, reason=f"garbled: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})")
