"""Most reads of a snapshot answered by one look-up in its records, as the walk would answer them.

Why: a scan reads some 250 paths of each snapshot, nearly all of them attributes under a device's
link (``/sys/bus/pci/devices/<address>/vendor``), and the walk (scanner/host/walk.py) checks every
step of each again: over a fleet of a thousand snapshots that was a second of CPU time. Here the
directory a path is in is walked once, by the walk itself, and kept by the path as it was asked
(a snapshot's records never change); the last name is then one look-up among the records.

Only what the walk would answer the same is answered here, for a name under a directory the
walk got through, no deeper than its :data:`~scanner.host.walk.MAX_DEPTH`: a record of a
directory, a file or anything else but a link is where the walk ends too; a name recorded as
missing or failed, or one the directory's recorded listing does not hold, is where it fails, for
the same reason (a scan asks for many such names: the ``name`` of every IOMMU group, optional
attributes, configuration files a distribution does not have). A link, an unrecorded name of a
directory whose listing was not recorded, or a directory that cannot be walked is left to the
walk, with its checks and everything it notes on the way (the paths it finds uncollected).
"""

from __future__ import annotations

from typing import Dict, Optional, Union

from scanner.host import DEFAULT_CAP, MISSING, Read
from scanner.host.walk import MAX_DEPTH, _Unresolvable

#: The record types a walk that reaches the name stops at (a link is followed, the rest fail).
PLAIN = frozenset(("dir", "file", "other"))


class DirectLookup:
    """For :class:`~scanner.host.snapshot.SnapshotHost`: ``entries`` (its records), ``_listing`` (a
    recorded directory's names as a set) and the walk's ``_resolve_dir`` come from there."""

    entries: dict
    _dir_keys: Optional[Dict[str, str]] = None  # a directory's path as asked -> its records' key prefix

    def _plain_entry(self, path: str) -> Union[dict, str, None]:
        """The record the walk would end on at ``path``, the reason it would fail there (a str), or
        None where only the walk can tell."""
        parent, _, leaf = ("/" + path.strip("/")).rpartition("/")
        if leaf in ("", ".", ".."):
            return None
        known = self._dir_keys
        if known is None:
            known = self._dir_keys = {}
        prefix = known.get(parent)
        if prefix is None:
            try:
                parts = self._resolve_dir(parent) if parent else ()
            except _Unresolvable:
                return None
            if len(parts) >= MAX_DEPTH:
                return None
            prefix = known[parent] = "/" + "/".join(parts) + "/" if parts else "/"
        entry = self.entries.get(prefix + leaf)
        if entry is None:
            # what the walk's look-up of an unrecorded name says when its directory's listing was recorded
            listing = self._listing(prefix[:-1] or "/")
            return MISSING if listing is not None and leaf not in listing else None
        kind = entry["type"]
        if kind in PLAIN:
            return entry
        if kind == "missing":
            return MISSING
        return entry["reason"] if kind == "error" else None

    def read(self, path: str, cap: int = DEFAULT_CAP, lenient: bool = False) -> Read:
        """A recorded file's text as :meth:`~scanner.host.tree.TreeHost.read` gives it, without its
        round trip through bytes where that cannot change it, leniently or not: plain ASCII, no NUL,
        within ``cap``. Anything else (a NUL, other characters, a size past the cap) takes that way."""
        entry = self._plain_entry(path)
        if entry is not None:
            if entry.__class__ is str:
                return Read(path, reason=entry)
            text = entry.get("text")
            if text is not None and text.isascii() and len(text) <= cap and "\0" not in text:
                return Read(path, text)
        return super().read(path, cap, lenient)

    def resolve(self, path: str) -> Read:
        """:meth:`~scanner.host.tree.TreeHost.resolve`: where the look-up answers, the record's own key
        (its directory's, as walked, and the name), or the reason the walk fails there."""
        entry = self._plain_entry(path)
        if entry is None:
            return super().resolve(path)
        if entry.__class__ is str:
            return Read(path, reason=entry)
        parent, _, leaf = ("/" + path.strip("/")).rpartition("/")
        return Read(path, self._dir_keys[parent] + leaf)
