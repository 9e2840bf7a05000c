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
"""

from __future__ import annotations

import base64
import binascii
import json
import stat
from typing import Optional

from scanner.host import DEFAULT_CAP, BytesRead, Listing, Read
from scanner.host.tree import MISSING, Components, TreeHost, _Unresolvable

NOT_COLLECTED = "not in the snapshot (the collector did not record it)"
#: The largest snapshot file read; real ones are a few MB (kernel config, pci.ids, cpuinfo).
MAX_SNAPSHOT_BYTES = 512 << 20

_MODES = {"dir": stat.S_IFDIR, "file": stat.S_IFREG, "link": stat.S_IFLNK, "other": stat.S_IFIFO}


class SnapshotError(Exception):
    """A snapshot that cannot be used: unreadable, not JSON, or not what the schema describes."""


def parse_snapshot(text: str, where: str) -> dict:
    """Parse and validate snapshot JSON; raises :class:`SnapshotError` with one line naming ``where``."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise SnapshotError(f"{where}: not valid JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != "vfio-scan-snapshot":
        raise SnapshotError(f"{where}: not a vfio-scan snapshot (no \"format\": \"vfio-scan-snapshot\")")
    version = str(document.get("snapshot_version", ""))
    if not version.startswith("1."):
        raise SnapshotError(f"{where}: snapshot_version {version or '?'} is not one this vfio-scan reads (1.x)")
    from scanner.host.snapshot_entries import entries_are_valid

    validator = _validator()
    entries = document.get("entries")
    # the bulk (entries) is checked in plain Python; jsonschema checks the rest, and everything
    # again when that finds a fault, so that the message is the schema's own
    envelope = dict(document, entries={}) if "entries" in document else document
    error = None
    if not entries_are_valid(entries) or not validator.is_valid(envelope):
        error = min(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)), default=None)
    if error is not None:
        at = "/" + "/".join(str(p) for p in error.absolute_path)
        raise SnapshotError(f"{where}: does not match schemas/snapshot.schema.json at {at}: {error.message}")
    return document


_VALIDATORS: list = []


def _validator():
    """The snapshot schema's validator, built once per process (a fleet loads many snapshots)."""
    if not _VALIDATORS:
        from scanner.output import schema_validator

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


class SnapshotHost(TreeHost):
    """The Host interface answered from a snapshot dict (already validated)."""

    source = "snapshot"

    def __init__(self, snapshot: dict, origin: str = "snapshot"):
        # deliberately not TreeHost.__init__: there is no directory behind this host
        self.snapshot = snapshot
        self.entries = snapshot["entries"]
        self.origin = origin
        self.root = None
        self.kernel_log_file = None
        self.machine = snapshot.get("machine")
        self._dir_cache = {}
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
            listing = self.entries.get(parent or "/", {}).get("names")
            if listing is not None and name not in listing:
                raise _Unresolvable(MISSING)
            self.uncollected.add(key)
            raise _Unresolvable(NOT_COLLECTED)
        if entry["type"] == "missing":
            raise _Unresolvable(MISSING)
        if entry["type"] == "error":
            raise _Unresolvable(entry["reason"])
        return entry

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
        try:
            parts = self._resolve(path)
            return (self._entry(parts) if parts else {"type": "dir"}), None
        except _Unresolvable as exc:
            return None, exc.reason

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

    # -- host identity and the kernel log ------------------------------------------------------
    def hostname(self) -> str:
        return self.snapshot["hostname"]

    def kernel_log(self) -> Read:
        log = self.snapshot["kernel_log"]
        return Read(log["source"], log.get("text"), None if "text" in log else log.get("reason", NOT_COLLECTED))

    def describe(self) -> str:
        return f"snapshot {self.origin} of {self.snapshot['hostname']} ({self.snapshot['collected_at']})"
