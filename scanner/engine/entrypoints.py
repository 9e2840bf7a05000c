"""The ``vfio_scan`` entry points, found without importing :mod:`importlib.metadata` when that is safe.

Importing importlib.metadata costs more than a whole scan of a small machine (it pulls in email,
zipfile, csv, pathlib, ...), and every command that loads plugins would pay it even when no
third-party plugin is installed. So for the common case this module reads the very files
importlib.metadata reads, the way it reads them (Python 3.11 and later):

* the ``*.dist-info`` and ``*.egg-info`` directories of each ``sys.path`` entry, in ``sys.path``
  order, grouped per entry by normalized distribution name as importlib.metadata's ``Lookup``
  does, and one distribution per normalized name: the first found wins, a later one is shadowed
  (``importlib.metadata._unique``);
* their ``entry_points.txt`` (``Sectioned``: stripped lines, ``#`` comments, ``[group]``,
  ``name = value``), and for a distribution that has an entry point in the group, the ``Name``
  and ``Version`` headers of its ``METADATA`` (or ``PKG-INFO``).

Whenever the environment is anything else -- a ``sys.path`` entry that is a file (a zip) or
cannot be listed, a metadata finder on ``sys.meta_path`` other than the standard PathFinder,
an ``.egg`` directory, a name importlib.metadata would have to read the metadata to normalize,
a file it would fail on -- :func:`entry_points` hands over to importlib.metadata itself, so the
answer (or the error) is always the one importlib.metadata gives.
"""

from __future__ import annotations

import functools
import os
import re
import sys

#: What importlib.metadata's PathDistribution.read_text turns into "no such file".
_ABSENT = (FileNotFoundError, IsADirectoryError, KeyError, NotADirectoryError, PermissionError)
#: A header line for email's feedparser (``email.feedparser.headerRE``). The patterns here are
#: compiled on first use (re caches them): without a third-party plugin they are never needed.
_HEADER_LINE = r"^(From |[\041-\071\073-\176]*:|[\t ])"
#: importlib.metadata's ``EntryPoint.pattern``.
_VALUE = r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$"
_SUFFIXES = (".dist-info", ".egg-info")


class _Unusual(Exception):
    """Something this reader does not reproduce exactly: ask importlib.metadata instead."""


def entry_points(group: str) -> list:
    """Entry points of ``group``, in the order importlib.metadata's ``entry_points(group=...)`` gives them.

    Each has ``name``, ``value``, ``group``, ``dist`` (``name``, ``version``) and ``load()``.
    """
    if sys.version_info >= (3, 11):  # the importlib.metadata whose behaviour _discover mirrors
        try:
            return _discover(group, sys.path)
        except _Unusual:
            pass
    return _with_importlib_metadata(group)


def _with_importlib_metadata(group: str) -> list:
    from importlib.metadata import entry_points as _entry_points

    try:
        return list(_entry_points(group=group))
    except TypeError:  # Python 3.9: its entry points do not know their distribution
        return _with_distributions(group)


def _with_distributions(group: str) -> list:
    """Python 3.9's ``entry_points()[group]`` (every distribution's, in ``distributions()`` order), each
    with the distribution it came from, so that a plugin is shown with its package and version as on
    later Pythons."""
    from importlib.metadata import distributions

    found = []
    for dist in distributions():
        named = None
        for ep in dist.entry_points:
            if ep.group == group:
                named = named or Distribution("", dist.metadata["Name"], dist.version)  # its path: not asked for
                found.append(EntryPoint(ep.name, ep.value, group, named))
    return found


class EntryPoint:
    """One entry point; :meth:`load` is importlib.metadata's ``EntryPoint.load``, to the error message."""

    def __init__(self, name: str, value: str, group: str, dist: "Distribution"):
        self.name, self.value, self.group, self.dist = name, value, group, dist

    def load(self):
        from importlib import import_module

        match = re.match(_VALUE, self.value)
        module = import_module(match.group("module"))
        attrs = filter(None, (match.group("attr") or "").split("."))
        return functools.reduce(getattr, attrs, module)

    def __repr__(self) -> str:
        return f"EntryPoint(name={self.name!r}, value={self.value!r}, group={self.group!r})"


class Distribution:
    def __init__(self, path: str, name: str, version: str):
        self.path, self.name, self.version = path, name, version


def _normalize(name: str) -> str:
    """importlib.metadata's ``Prepared.normalize``: PEP 503, with dashes as underscores."""
    return re.sub(r"[-_.]+", "-", name).lower().replace("-", "_")


def _read(path: str):
    """importlib.metadata's ``PathDistribution.read_text``: the text, or None when it is absent."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except _ABSENT:
        return None
    except Exception:  # undecodable, a loop of links...: importlib.metadata raises; let it
        raise _Unusual(path) from None


def _check_finders() -> None:
    """Only the standard PathFinder may contribute distributions (``Distribution._discover_resolvers``)."""
    from importlib.machinery import PathFinder

    for finder in sys.meta_path:
        if getattr(finder, "find_distributions", None) and finder is not PathFinder:
            raise _Unusual(finder)


def _metadata_dirs(root):
    """The metadata directories of one sys.path entry, in importlib.metadata's ``Lookup`` order:
    (normalized name, directory name), grouped by normalized name in order of first appearance."""
    if not isinstance(root, str):
        raise _Unusual(root)
    try:
        children = os.listdir(root or ".")
    except FileNotFoundError:  # importlib.metadata: neither a directory nor a zip, so nothing
        return
    except OSError:  # a zip, or unreadable: importlib.metadata's zip fallback decides
        raise _Unusual(root) from None
    base_is_egg = os.path.basename(root).lower().endswith(".egg")
    infos = {}
    for child in children:
        low = child.lower()
        if low.endswith(_SUFFIXES):
            stem, ext = os.path.splitext(child)
            name = stem.partition("-")[0]
            # A suffix in other case, or no name before it: importlib.metadata reads METADATA for the name.
            if ext not in _SUFFIXES or not name:
                raise _Unusual(child)
            infos.setdefault(_normalize(name), []).append(child)
        elif base_is_egg and low == "egg-info":
            raise _Unusual(root)
    for key, names in infos.items():
        for child in names:
            yield key, child


def _sections(text: str, group: str) -> list:
    """``(name, value)`` of ``group`` in an entry_points.txt (importlib.metadata's ``Sectioned``)."""
    found = []
    section = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line.strip("[]")
            continue
        if section is None:
            continue
        name, sep, value = line.partition("=")
        if not sep:  # importlib.metadata raises ValueError on it, whatever the group
            raise _Unusual(line)
        if section == group:
            found.append((name.strip(), value.strip()))
    return found


def _header(text: str, wanted: str):
    """The first ``wanted`` header of a METADATA text as ``email.message_from_string`` (compat32) reads it."""
    import io

    fields = []
    name, lines = "", []
    for line in io.StringIO(text, newline="").readlines():  # feedparser's line splitting
        if not re.match(_HEADER_LINE, line):  # a blank line or a body line ends the headers
            break
        if line[0] in " \t":  # continuation (dropped when there is no header to continue)
            if name:
                lines.append(line)
            continue
        if name:
            fields.append(lines)
            name, lines = "", []
        if line.startswith("From "):  # an envelope line: rare enough to leave to email
            raise _Unusual(line)
        colon = line.find(":")
        if colon > 0:
            name, lines = line[:colon], [line]
    if name:
        fields.append(lines)
    for lines in fields:
        key, value = lines[0].split(":", 1)
        if key.lower() == wanted.lower():
            value = (value.lstrip(" \t") + "".join(lines[1:])).rstrip("\r\n")
            if "\n" in value:  # folded: importlib.metadata re-indents it (_adapters.Message); leave it to it
                raise _Unusual(wanted)
            return value
    raise _Unusual(wanted)  # importlib.metadata: None (and a DeprecationWarning); rare, leave it to it


def _discover(group: str, paths) -> list:
    _check_finders()
    seen = set()
    found = []
    for root in list(paths):
        for key, child in _metadata_dirs(root):
            if key in seen:  # shadowed by a distribution of that name earlier on sys.path
                continue
            seen.add(key)
            path = os.path.join(root, child)
            pairs = _sections(_read(os.path.join(path, "entry_points.txt")) or "", group)
            if not pairs:
                continue
            text = _read(os.path.join(path, "METADATA")) or _read(os.path.join(path, "PKG-INFO"))
            if not text:
                raise _Unusual(path)
            dist = Distribution(path, _header(text, "Name"), _header(text, "Version"))
            found.extend(EntryPoint(name, value, group, dist) for name, value in pairs)
    return found
