"""A snapshot's JSON, parsed within bounds: how many values it may make, how deeply nested.

A snapshot may come from a host an attacker controls (``vfio-scan fleet``, ``scan --snapshot``).
Its size is capped where it is read (64 MiB), but size alone does not bound what parsing it
takes: ``[[],[],...]`` makes a Python list of three bytes each, and 64 MiB of them came to 2 GB.
So the values are counted before anything is made, at the speed of ``str.count``, and a text
that would make more than any collector writes is refused unparsed; what is parsed is then
checked for nesting without recursion.
"""

from __future__ import annotations

import json

from scanner.base.json_text import nesting_exceeds

#: Arrays and objects inside each other. A snapshot has four levels (the document, its entries,
#: an entry, a listing); the margin leaves room for what a later 1.x collector may add.
MAX_NESTING = 32
TOO_DEEP = f"too deeply nested (arrays or objects over {MAX_NESTING} levels deep; a snapshot has 4)"
#: The JSON values and object keys a snapshot may hold, as :func:`values_at_most` counts them. A
#: generated host of 10,000 PCI functions (benchmarks/treegen.py: a 28 MB snapshot, the collector
#: already stopped at its own entry limit) holds 2.1 million; this is 2.4 times that. Parsed, a
#: value takes 80 bytes at most (a short key with a short string), so a parse stays near 0.4 GB.
MAX_VALUES = 5_000_000
#: What announces each value or key in JSON text: every one but the document's first follows one of these.
_VALUE_MARKS = ",:[{"


class SnapshotError(Exception):
    """A snapshot that cannot be used: unreadable, not JSON, or not what the schema describes."""


def values_at_most(text: str) -> int:
    """How many values and object keys parsing ``text`` can make, at most (the marks inside strings
    are counted too: never fewer than there are). Four passes of ``str.count``: a tenth of a second for 28 MB."""
    return 1 + sum(text.count(mark) for mark in _VALUE_MARKS)


def decode_bounded(text: str, where: str):
    """The JSON value of ``text``, nested no deeper than :data:`MAX_NESTING`.

    The C decoder counts its nesting against the recursion limit and stops with RecursionError
    about a thousand levels down (no stack overflow, little time spent); what it does return is
    then checked without recursion, so that nothing after it (the schema, an error message that
    quotes a value) ever recurses through a hostile depth.
    """
    document = _decode(text, where)
    if nesting_exceeds(document, MAX_NESTING):
        raise SnapshotError(f"{where}: {TOO_DEEP}")
    return document


def _decode(text: str, where: str):
    """The JSON value of ``text``, of any nesting the C decoder accepts, and of at most :data:`MAX_VALUES` values."""
    count = values_at_most(text)
    if count > MAX_VALUES:
        raise SnapshotError(f"{where}: too many JSON values to be a snapshot ({count:,} by the count of its "
                            f"',', ':', '[' and '{{'; the limit is {MAX_VALUES:,}): not parsed")
    try:
        return json.loads(text)
    except RecursionError:
        raise SnapshotError(f"{where}: {TOO_DEEP}") from None
    except ValueError as exc:
        raise SnapshotError(f"{where}: not valid JSON: {exc}") from None

