"""Indented JSON: the very text of ``json.dumps(doc, indent=2, ensure_ascii=False)``, made faster.

Why: the standard library writes indented JSON in pure Python, a generator step per value, and
the report of a scan of thousands of devices has millions of values (10,000 targets: 1.3 s of a
4.7 s scan). Here a list of strings is joined in one step, a string or constant goes out in one
piece with its key, and a list met again at the same depth (one object that many findings
share) is written once and its text reused.

Only plain values take this path (dicts with ``str`` keys, lists, tuples, ``str``, ``int``,
finite ``float``, ``bool``, ``None``, shallow): anything else, or a reference cycle, leaves the
whole document to ``json.dumps``, so the text, or the error, is always the standard library's.

:func:`iterdumps` gives the same text in pieces, for a writer that sends each piece on at once: a
:class:`Stream` in the document stands for a list whose items are made one at a time (a report's
findings), so that neither the whole document nor its whole text is ever held. Each piece is a value
of the document (one finding), written as above, or by ``json.dumps`` when it is not plain: the
standard library indents a value inside a document exactly as it indents it alone, one level deeper
on every line, so the text is the same either way.

One difference, in both paths: a lone surrogate (a file name's undecodable byte kept as
``\\udcff``, or one a snapshot spelled so) is written as JSON's escape ``\\udcff``. The standard
library writes it raw, and a raw surrogate cannot be encoded as UTF-8: every output file would
fail to be written. The escape is valid JSON and reads back as the very same string.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring
from typing import Callable, Iterable, Iterator, List

from scanner.base.json_text import escape_surrogates

INDENT = "  "
#: lists of strings at least this long are remembered once written (by identity and depth)
SHARED_MIN = 8
#: deeper documents go to json.dumps, whose recursion limit then decides as it always did
MAX_DEPTH = 64
_INFINITY = float("inf")
_NEWLINE = ["\n" + INDENT * level for level in range(MAX_DEPTH + 2)]  # what starts a line at each depth
_WORDS = {None: "null", True: "true", False: "false"}


class _NotPlain(Exception):
    """A value this module leaves to json.dumps."""


def dumps(doc, end: str = "") -> str:
    """``json.dumps(doc, indent=2, ensure_ascii=False) + end`` (``end`` joined, not copied on),
    lone surrogates escaped."""
    out: List[str] = []
    try:
        _value(doc, 0, out, {}, set())
    except _NotPlain:
        return escape_surrogates(json.dumps(doc, indent=2, ensure_ascii=False) + end)
    out.append(end)
    return escape_surrogates("".join(out))


class Stream:
    """A list whose items are made only when :func:`iterdumps` reaches each one, and dropped once written."""

    __slots__ = ("items",)

    def __init__(self, items: Iterable):
        self.items = items


class Written:
    """A value that writes its own text: ``text(level)`` is what the value it stands for would be
    written as at ``level`` of a document (a finding written without making its dict first)."""

    __slots__ = ("text",)

    def __init__(self, text: Callable[[int], str]):
        self.text = text


def iterdumps(doc, end: str = "") -> Iterator[str]:
    """The text of ``dumps(doc, end)`` piece by piece. A dict that holds a :class:`Stream` as one of its
    values (a report around its findings) is written key by key, and its keys must be ``str``."""
    known: dict = {}
    yield from _pieces(doc, 0, known)
    if end:
        yield end


#: at most this many lists' texts are remembered while a document is streamed: its findings come and go
STREAM_KNOWN_MAX = 4096


def _pieces(o, level: int, known: dict) -> Iterator[str]:
    if type(o) is Stream:
        items = iter(o.items)
        first = next(items, _END)
        if first is _END:
            yield "[]"
            return
        inner = "," + _NEWLINE[level + 1]
        yield "[" + _NEWLINE[level + 1]
        yield from _pieces(first, level + 1, known)
        for item in items:
            yield inner
            yield from _pieces(item, level + 1, known)
        yield _NEWLINE[level] + "]"
    elif type(o) is Written:
        yield o.text(level)
    elif type(o) is dict and any(type(v) is Stream for v in o.values()):
        start, comma = "{" + _NEWLINE[level + 1], "," + _NEWLINE[level + 1]
        for key, value in o.items():
            yield start + encode_basestring(key) + ": "
            yield from _pieces(value, level + 1, known)
            start = comma
        yield _NEWLINE[level] + "}"
    else:
        if len(known) > STREAM_KNOWN_MAX:
            known.clear()
        yield _text(o, level, known)


_END = object()


def value_text(o, level: int) -> str:
    """One value's text as it stands at ``level`` of a document (its first line not indented)."""
    return _text(o, level, {})


def _text(o, level: int, known: dict) -> str:
    """One value's text, as it stands at ``level`` of a document."""
    out: List[str] = []
    try:
        _value(o, level, out, known, set())
    except _NotPlain:
        return escape_surrogates(json.dumps(o, indent=2, ensure_ascii=False).replace("\n", "\n" + INDENT * level))
    return escape_surrogates("".join(out))


def _value(o, level: int, out: List[str], known: dict, active: set) -> None:
    kind = type(o)
    if kind is str:
        out.append(encode_basestring(o))
    elif o is None:
        out.append("null")
    elif o is True:
        out.append("true")
    elif o is False:
        out.append("false")
    elif kind is int:
        out.append(int.__repr__(o))
    elif kind is float:
        if o != o or o == _INFINITY or o == -_INFINITY:
            raise _NotPlain  # NaN, Infinity: json.dumps's own spelling
        out.append(float.__repr__(o))
    elif kind is list or kind is tuple:
        _list(o, level, out, known, active)
    elif kind is dict:
        _dict(o, level, out, known, active)
    else:
        raise _NotPlain


def _list(items, level: int, out: List[str], known: dict, active: set) -> None:
    if not items:
        out.append("[]")
        return
    if level >= MAX_DEPTH or id(items) in active:
        raise _NotPlain  # a cycle: json.dumps reports it
    seen = known.get((id(items), level))
    if seen is not None and seen[0] is items:
        out.append(seen[1])
        return
    inner = "\n" + INDENT * (level + 1)
    if all(type(v) is str for v in items):
        text = "[" + inner + ("," + inner).join(map(encode_basestring, items)) + "\n" + INDENT * level + "]"
        if len(items) >= SHARED_MIN:
            known[(id(items), level)] = (items, text)
        out.append(text)
        return
    active.add(id(items))
    out.append("[" + inner)
    first = True
    for value in items:
        if first:
            first = False
        else:
            out.append("," + inner)
        _value(value, level + 1, out, known, active)
    out.append(_NEWLINE[level] + "]")
    active.discard(id(items))


def _dict(mapping, level: int, out: List[str], known: dict, active: set) -> None:
    if not mapping:
        out.append("{}")
        return
    if level >= MAX_DEPTH or id(mapping) in active:
        raise _NotPlain
    active.add(id(mapping))
    inner = _NEWLINE[level + 1]
    start, comma = "{" + inner, "," + inner
    for key, value in mapping.items():
        if type(key) is not str:
            raise _NotPlain  # json.dumps turns numbers into keys, or refuses the key
        kind = type(value)
        # a string, null, true or false (most values of a report) in the same piece as its key
        if kind is str:
            out.append(start + encode_basestring(key) + ": " + encode_basestring(value))
        elif value is None or kind is bool:
            out.append(start + encode_basestring(key) + ": " + _WORDS[value])
        else:
            out.append(start + encode_basestring(key) + ": ")
            _value(value, level + 1, out, known, active)
        start = comma
    out.append(_NEWLINE[level] + "}")
    active.discard(id(mapping))


__all__ = ["NEWLINE", "Stream", "Written", "dumps", "escape_surrogates", "iterdumps", "value_text"]
NEWLINE = _NEWLINE
