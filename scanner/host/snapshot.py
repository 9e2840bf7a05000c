"""A host read from a snapshot (``vfio-scan collect``, ``scanner/collector.py``): offline, any time later.

Why a subclass of :class:`~scanner.host.tree.TreeHost`: the chroot-style walk (links followed by
hand, ``..`` never above the root, the 40-hop loop limit, a path through a file is missing) must
answer a snapshot exactly as it answers the tree the snapshot was taken from. Sharing the walk
makes that true by construction; only its two primitives differ: ``lstat`` and ``readlink``
answer from the recorded entries. Reads and listings return the recorded contents, or the
recorded reason (missing, permission denied, garbled, too large, ...).

A path the collector never looked at is neither present nor missing: it reads as
:data:`NOT_COLLECTED`, so a rule skips with that reason instead of failing on a guess, and the
path is remembered in :attr:`SnapshotHost.uncollected` (the tests use it to catch a Facts read
the collector does not capture).

A snapshot may come from a host an attacker controls, so what is read is bounded before it is
used: the file's size, its nesting, its number of entries, the length of the names the host
reports for itself and of any message quoting it. A snapshot whose collector stopped at one of
its own limits is read, but its scan is incomplete (:attr:`SnapshotHost.collection_limits`).
"""

from __future__ import annotations

import base64
import binascii
import stat
from typing import List, Optional

from scanner.base.json_text import nesting_exceeds
from scanner.host import DEFAULT_CAP, BytesRead, Listing, Read, Stat
from scanner.host.snapshot_entries import entries_are_valid
from scanner.host.snapshot_envelope import envelope_is_plainly_valid, snapshot_schema
from scanner.host.snapshot_json import (  # noqa: F401  (the parse's limits, named where snapshots are read)
    MAX_NESTING, MAX_VALUES, TOO_DEEP, SnapshotError, _decode, decode_bounded)
from scanner.host.snapshot_lookup import DirectLookup
from scanner.host.tree import MISSING, Components, TreeHost, _Unresolvable

NOT_COLLECTED = "not in the snapshot (the collector did not record it)"
#: The largest snapshot file read. Real ones are far smaller: about 0.1 MB for a small machine, a
#: few MB for a large server (kernel config, cpuinfo, interrupts, one record per sysfs path read),
#: and no single file the collector reads is over 16 MiB. What parsing it takes in memory is
#: bounded by :data:`~scanner.host.snapshot_json.MAX_VALUES`, not by this size.
MAX_SNAPSHOT_BYTES = 64 << 20
#: The collector's own MAX_ENTRIES (scanner/collector.py): no snapshot it writes has more.
MAX_ENTRIES = 250000
#: Names listed by all of a snapshot's directories together. The collector's 250,000 entries hold some 14,000
#: PCI functions at most, listed in some 210,000 names (10,000 functions: 150,000); a scan makes an object of
#: hundreds of bytes for each group or device named, so four million names of one listing cost 2 GB.
MAX_LISTED_NAMES = 1000000
#: Host names and machine names as the host reported them: the kernel keeps 64 characters
#: (__NEW_UTS_LEN), a DNS name 253. Anything longer is cut here, with a note, so that no output
#: repeats a hostile name of megabytes in every line that names the host.
MAX_IDENTITY = 255
#: A schema message quotes the value it rejects: a value of megabytes must not become the message.
MAX_MESSAGE = 300

_MODES = {"dir": stat.S_IFDIR, "file": stat.S_IFREG, "link": stat.S_IFLNK, "other": stat.S_IFIFO}


def parse_snapshot(text: str, where: str) -> dict:
    """Parse and validate snapshot JSON; raises :class:`SnapshotError` with one line naming ``where``.

    A fleet audit parses a thousand snapshots, so a sound one takes the short way
    (:func:`_plainly_valid`); anything that way does not accept goes through every check in turn,
    and is refused with the message of the first that fails.
    """
    document = _decode(text, where)
    if _plainly_valid(document):
        return document
    if nesting_exceeds(document, MAX_NESTING):
        raise SnapshotError(f"{where}: {TOO_DEEP}")
    return _checked(document, where)


def _checked(document, where: str) -> dict:
    """``document`` (nested no deeper than :data:`MAX_NESTING`), or the first reason it is no snapshot."""
    if not isinstance(document, dict) or document.get("format") != "vfio-scan-snapshot":
        raise SnapshotError(f"{where}: not a vfio-scan snapshot (no \"format\": \"vfio-scan-snapshot\")")
    version = str(document.get("snapshot_version", ""))
    if not version.startswith("1."):
        raise SnapshotError(f"{where}: snapshot_version {version or '?'} is not one this vfio-scan reads (1.x)")
    validator = _validator()
    entries = document.get("entries")
    if isinstance(entries, dict) and len(entries) > MAX_ENTRIES:
        raise SnapshotError(f"{where}: {len(entries)} entries, more than a collector records ({MAX_ENTRIES})")
    listed = listed_names(entries) if isinstance(entries, dict) else 0
    if listed > MAX_LISTED_NAMES:
        raise SnapshotError(f"{where}: {listed} names listed in its directories, more than a "
                            f"collector records ({MAX_LISTED_NAMES})")
    # the bulk (entries) is checked in plain Python; jsonschema checks the rest, and everything
    # again when that finds a fault, so that the message is the schema's own
    envelope = dict(document, entries={}) if "entries" in document else document
    error = None
    if not entries_are_valid(entries) or not validator.is_valid(envelope):
        error = min(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)), default=None)
    if error is not None:
        at = "/" + "/".join(str(p) for p in error.absolute_path)
        raise SnapshotError(f"{where}: does not match schemas/snapshot.schema.json at {_shorten(at)}: "
                            f"{_shorten(error.message)}")
    return document


def _plainly_valid(document) -> bool:
    """Would every check of :func:`parse_snapshot` pass? True only when it is sure.

    The same checks, in an order that saves the walk over every entry for nesting: entries that
    match the schema are plain values, names lists at most, four levels in all, so the document is
    nested no deeper than its envelope (everything but the entries) or four. Only plain values are
    looked at before the envelope's nesting is known (``str()`` of a hostile version would recurse);
    the envelope of the collector's usual shape is then checked in plain Python, any other by the schema.
    """
    if type(document) is not dict or document.get("format") != "vfio-scan-snapshot":
        return False
    version = document.get("snapshot_version", "")
    if type(version) is not str or not version.startswith("1."):
        return False
    entries = document.get("entries")
    if type(entries) is not dict or len(entries) > MAX_ENTRIES or not entries_are_valid(entries, MAX_LISTED_NAMES):
        return False
    envelope = dict(document, entries={})
    if nesting_exceeds(envelope, MAX_NESTING):
        return False
    return envelope_is_plainly_valid(envelope, snapshot_schema()) or _validator().is_valid(envelope)


def listed_names(entries: dict) -> int:
    """How many names the directory entries list, all together."""
    return sum(len(entry["names"]) for entry in entries.values()
               if type(entry) is dict and type(entry.get("names")) is list)


def _shorten(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` cut to ``limit`` characters, saying so: messages stay one readable line."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def bounded_identity(name: Optional[str]) -> Optional[str]:
    """A host-reported name cut to :data:`MAX_IDENTITY` characters, the cut noted in the name itself."""
    if name is None or len(name) <= MAX_IDENTITY:
        return name
    return f"{name[:MAX_IDENTITY]}... (cut: {len(name)} characters)"


_VALIDATORS: list = []


def _validator():
    """The snapshot schema's validator, built once per process (a fleet loads many snapshots)."""
    if not _VALIDATORS:
        from scanner.base.schemas import schema_validator

        _VALIDATORS.append(schema_validator("snapshot"))
    return _VALIDATORS[0]


def load_snapshot(path: str) -> dict:
    """Read and validate a snapshot file (see :func:`parse_snapshot`)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_SNAPSHOT_BYTES + 1)
    except OSError as exc:
        raise SnapshotError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_SNAPSHOT_BYTES:
        raise SnapshotError(f"{path}: too large for a snapshot (over {MAX_SNAPSHOT_BYTES} bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SnapshotError(f"{path}: not valid JSON: not UTF-8 text (byte offset {exc.start})") from None
    return parse_snapshot(text, path)


class SnapshotHost(DirectLookup, TreeHost):
    """The Host interface answered from a snapshot dict (already validated)."""

    source = "snapshot"

    def __init__(self, snapshot: dict, origin: str = "snapshot"):
        # deliberately not TreeHost.__init__: there is no directory behind this host
        self.snapshot = snapshot
        self.entries = snapshot["entries"]
        self.origin = origin
        self.root = None
        self.kernel_log_file = None
        self.machine = bounded_identity(snapshot.get("machine"))
        self._hostname = bounded_identity(snapshot["hostname"])
        self.collected_at = snapshot["collected_at"]  # when the collector ran (ISO 8601, schema-checked)
        self._dir_cache = {}
        self._listed = {}
        self.uncollected = set()

    @classmethod
    def from_file(cls, path: str) -> "SnapshotHost":
        return cls(load_snapshot(path), origin=path)

    # -- the walk's primitives, from the records -------------------------------------------
    def _os_path(self, parts: Components) -> str:
        raise AssertionError("a snapshot host has no files behind it")

    def _entry(self, parts: Components) -> dict:
        """The record at ``parts``, or raise the reason a walk stops there."""
        key = "/" + "/".join(parts)
        entry = self.entries.get(key)
        if entry is None:
            parent, _, name = key.rpartition("/")
            listing = self._listing(parent or "/")
            if listing is not None and name not in listing:
                raise _Unresolvable(MISSING)
            self.uncollected.add(key)
            raise _Unresolvable(NOT_COLLECTED)
        if entry["type"] == "missing":
            raise _Unresolvable(MISSING)
        if entry["type"] == "error":
            raise _Unresolvable(entry["reason"])
        return entry

    def _listing(self, key: str) -> Optional[frozenset]:
        """The recorded names of directory ``key`` as a set, made once: a directory of 100,000
        names must not be searched name by name for every path under it that was not recorded."""
        if key not in self._listed:
            names = self.entries.get(key, {}).get("names")
            self._listed[key] = None if names is None else frozenset(names)
        return self._listed[key]

    def _lstat_mode(self, parts: Components) -> int:
        if not parts:
            return stat.S_IFDIR
        return _MODES[self._entry(parts)["type"]]

    def _readlink(self, parts: Components) -> str:
        entry = self._entry(parts)
        if "link_error" in entry:
            raise _Unresolvable(entry["link_error"])
        return entry["target"]

    def _final(self, path: str):
        """(entry, None) for the resolved ``path``, or (None, reason)."""
        entry = self._plain_entry(path)
        if entry is not None:
            return (None, entry) if entry.__class__ is str else (entry, None)
        try:
            parts = self._resolve(path)
            return (self._entry(parts) if parts else self._root_entry()), None
        except _Unresolvable as exc:
            return None, exc.reason

    def _root_entry(self) -> dict:
        """The root as the collector recorded it (its listing, its owner and mode); a root recorded as
        anything but a directory is still the directory every path starts from, with nothing known of it."""
        entry = self.entries.get("/")
        return entry if isinstance(entry, dict) and entry.get("type") == "dir" else {"type": "dir"}

    # -- the read interface ------------------------------------------------------------------
    def is_dir(self, path: str) -> bool:
        entry, _ = self._final(path)
        return entry is not None and entry["type"] == "dir"

    def read_bytes(self, path: str, cap: int = DEFAULT_CAP) -> BytesRead:
        entry, reason = self._final(path)
        if entry is None:
            return BytesRead(path, reason=reason)
        if "text" in entry or "base64" in entry:
            data = self._data(entry)
            if data is None:
                return BytesRead(path, reason="garbled: the snapshot's record of this file is not valid data")
            if len(data) > cap:
                return BytesRead(path, reason=f"too large: over the {cap}-byte cap")
            return BytesRead(path, data)
        if "read_error" in entry:
            why = entry["read_error"]
            if why.startswith("too large"):
                if cap <= entry.get("cap", 0):
                    return BytesRead(path, reason=f"too large: over the {cap}-byte cap")
                self.uncollected.add(path)
            return BytesRead(path, reason=why)
        if entry["type"] == "dir":
            return BytesRead(path, reason="not a regular file (a directory)")
        if entry["type"] == "other":
            return BytesRead(path, reason="not a regular file")
        self.uncollected.add(path)
        return BytesRead(path, reason=NOT_COLLECTED)

    @staticmethod
    def _data(entry: dict) -> Optional[bytes]:
        try:
            if "text" in entry:
                return entry["text"].encode("utf-8", "surrogateescape")
            return base64.b64decode(entry["base64"], validate=True)
        except (binascii.Error, ValueError):  # UnicodeEncodeError is a ValueError
            return None

    def initramfs(self, path: str):
        """A snapshot records whether an image exists, never what it holds (tens of megabytes)."""
        from scanner.host.initramfs import InitramfsRead

        entry, reason = self._final(path)
        if entry is None:
            return InitramfsRead(path, reason=reason)
        if entry["type"] != "file":
            return InitramfsRead(path, reason="not a regular file")
        return InitramfsRead(path, reason=NOT_COLLECTED)

    def listdir(self, path: str) -> Listing:
        entry, reason = self._final(path)
        if entry is None:
            return Listing(path, reason=reason)
        if "names" in entry:
            return Listing(path, tuple(sorted(entry["names"])))
        if "list_error" in entry:
            return Listing(path, reason=entry["list_error"])
        if entry["type"] in ("file", "other"):
            return Listing(path, reason="not a directory")
        self.uncollected.add(path)
        return Listing(path, reason=NOT_COLLECTED)

    def lists(self, path: str, name: str) -> bool:
        """``name in listdir(path).entries()``, without sorting the recorded names for each question."""
        try:
            parts = self._resolve(path)
            entry = self._entry(parts) if parts else None  # what _final finds, as listdir asks it
        except _Unresolvable:
            return False  # the listing fails the same way
        if entry is not None and "names" in entry:
            return name in self._listing("/" + "/".join(parts))
        return name in self.listdir(path).entries()

    def stat(self, path: str) -> Stat:
        """The owner, group and mode the collector recorded (a ``stat`` capture), or why there are none."""
        entry, reason = self._final(path)
        if entry is None:
            return Stat(path, reason=reason)
        if "mode" not in entry:
            self.uncollected.add(path)
            return Stat(path, reason=NOT_COLLECTED)
        # int(): JSON's 432.0 is an integer too (the schema lets it through), and a mode is formatted in octal
        return Stat(path, int(entry.get("uid", 0)), int(entry.get("gid", 0)), int(entry["mode"]))

    # -- host identity and the kernel log ------------------------------------------------------
    def hostname(self) -> str:
        return self._hostname

    @property
    def collection_limits(self) -> List[str]:
        """Why this snapshot cannot vouch for the host, in one line (or none): the limits its
        collector hit. A path cut off by the entry limit or the total size cap reads as not
        collected and its rules skip, so the findings alone could say READY about a host the
        collector could not finish: this line makes the scan incomplete instead (exit 3)."""
        notes = self.snapshot.get("notes") or []
        if not notes:
            return []
        more = f" (and {len(notes) - 1} more)" if len(notes) > 1 else ""
        return [f"snapshot {self.origin}: incomplete, the collector stopped at a limit, so this scan is no evidence "
                f"of readiness: {_shorten(notes[0])}{more}"]

    def kernel_log(self) -> Read:
        log = self.snapshot["kernel_log"]
        return Read(log["source"], log.get("text"), None if "text" in log else log.get("reason", NOT_COLLECTED))

    def describe(self) -> str:
        return f"snapshot {self.origin} of {self._hostname} ({self.snapshot['collected_at']})"
