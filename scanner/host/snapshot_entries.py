"""The snapshot schema's ``entries`` rule, checked in plain Python.

Why not jsonschema alone: a snapshot holds thousands of entries (every step of every path the
rules read), and jsonschema spends about 0.2 s on one of them; merging the snapshots of a
thousand hosts spent more than a minute validating. This checks exactly what
``$defs/entry`` and ``propertyNames`` of ``schemas/snapshot.schema.json`` say, in a pass over
plain dicts; the schema stays the contract (``tests/test_snapshot_entries.py`` checks that the two
agree on generated entries), and when this finds a fault, jsonschema is asked again so that the
message is the schema's own.
"""

from __future__ import annotations

from typing import Optional

ENTRY_TYPES = frozenset(("file", "dir", "link", "other", "missing", "error"))
STRING_KEYS = frozenset(("reason", "target", "link_error", "list_error", "text", "base64", "read_error"))
#: Non-negative integers: a read's size cap; the owner, group and permission bits of a ``stat`` capture.
COUNT_KEYS = frozenset(("cap", "uid", "gid", "mode"))
KEYS = STRING_KEYS | COUNT_KEYS | {"type", "names"}
#: dependentSchemas: (present key, the type it needs or None, keys it excludes)
DEPENDENT = (
    ("reason", "error", ()),
    ("target", "link", ("link_error",)),
    ("link_error", "link", ()),
    ("text", None, ("base64", "read_error")),
    ("base64", None, ("read_error",)),
    ("names", None, ("list_error",)),
)
NEEDS_ONE_OF = ("reason", "target", "link_error")  # for entries of type error or link


def _is_integer(value) -> bool:
    """JSON Schema's integer: any number with no fractional part, but not a boolean."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


#: The shapes nearly every entry has, by key set: checked by one type test per value (the rest
#: of the rules cannot fail for them). A file read, a link, a directory listed, a bare lstat.
_COMMON = {
    frozenset(("type", "text", "cap")): ("file",),
    frozenset(("type", "target")): ("link",),
    frozenset(("type", "names")): ("dir",),
    frozenset(("type",)): ("file", "dir", "other", "missing"),
}


def _common_shape_is_valid(entry, kinds) -> bool:
    if entry["type"] not in kinds:
        return False
    if "text" in entry:
        return type(entry["text"]) is str and _is_integer(entry["cap"]) and entry["cap"] >= 0
    if "target" in entry:
        return type(entry["target"]) is str
    if "names" in entry:
        names = entry["names"]
        return type(names) is list and all(type(name) is str for name in names)
    return True


def entry_is_valid(entry) -> bool:
    """Does one entry match ``$defs/entry``?"""
    if type(entry) is not dict:
        return False
    kinds = _COMMON.get(frozenset(entry))
    if kinds is not None and _common_shape_is_valid(entry, kinds):
        return True
    if not KEYS.issuperset(entry):
        return False
    kind = entry.get("type")
    if not isinstance(kind, str) or kind not in ENTRY_TYPES:
        return False
    for key in STRING_KEYS.intersection(entry):
        if not isinstance(entry[key], str):
            return False
    if "names" in entry:
        names = entry["names"]
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            return False
    for key in COUNT_KEYS.intersection(entry):
        if not (_is_integer(entry[key]) and entry[key] >= 0):
            return False
    for key, needs_type, excludes in DEPENDENT:
        if key in entry:
            if needs_type is not None and kind != needs_type:
                return False
            if any(other in entry for other in excludes):
                return False
    if kind in ("error", "link") and not any(key in entry for key in NEEDS_ONE_OF):
        return False
    return True


_BARE_KINDS = _COMMON[frozenset(("type",))]


def entries_are_valid(entries, max_names: Optional[int] = None) -> bool:
    """Do all entries match the schema (keys are absolute paths, values valid entries), listing no more
    than ``max_names`` names in all when it is given?

    A fleet's snapshots hold a million entries between them: the common shapes are told by their
    size and type and checked inline here, without a call or a key set made for each; any other
    entry, and any that fails inline, gets the whole of :func:`entry_is_valid`. The names are
    counted in the same pass.
    """
    if type(entries) is not dict:
        return False
    listed = 0
    for key, entry in entries.items():
        if not (isinstance(key, str) and key.startswith("/")):
            return False
        if type(entry) is dict:
            size, kind = len(entry), entry.get("type")
            if size == 1 and kind in _BARE_KINDS:
                continue
            if size == 3 and kind == "file" and type(entry.get("text")) is str:
                cap = entry.get("cap")
                if type(cap) is int and cap >= 0:
                    continue
            elif size == 2 and kind == "link" and type(entry.get("target")) is str:
                continue
            elif size == 2 and kind == "dir":
                names = entry.get("names")
                if type(names) is list and all([type(name) is str for name in names]):
                    listed += len(names)
                    continue
        if not entry_is_valid(entry):
            return False
        if type(entry.get("names")) is list:
            listed += len(entry["names"])
    return max_names is None or listed <= max_names
