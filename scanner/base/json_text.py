"""Indented JSON text that can always be written out as UTF-8.

Host text reaches JSON documents as it was read, and JSON itself can spell a lone surrogate
(``"\\ud800"``, in a hostile snapshot); a file name that is not UTF-8 becomes one as well. Written
with ``ensure_ascii=False``, such a character cannot be encoded, and the whole output is lost to
a UnicodeEncodeError. Escaped as ``\\uXXXX`` inside its JSON string, it means the same character
and the text encodes.

And how deep a decoded JSON value nests (:func:`nesting_exceeds`), without recursing: a hostile
input (a snapshot, a policy) may nest arrays thousands of levels deep, and whatever walks such a
value recursively afterwards (a schema, a message that quotes it) would fail with RecursionError.
"""

from __future__ import annotations

import json

from scanner.base.lazyre import lazy_compile

_SURROGATE = lazy_compile("[\ud800-\udfff]")


def escape_surrogates(text: str) -> str:
    """JSON text with every lone surrogate written as its ``\\uXXXX`` escape, so that it encodes as UTF-8.

    Surrogates only ever stand inside JSON strings, where the escape means the same character;
    text without one (nearly every report) is returned as it is, after one search.
    """
    if text.isascii() or not _SURROGATE.search(text):
        return text
    return _SURROGATE.sub(lambda match: "\\u%04x" % ord(match.group()), text)


def indented(document, end: str = "") -> str:
    """``json.dumps(document, indent=2, ensure_ascii=False) + end``, lone surrogates escaped."""
    return escape_surrogates(json.dumps(document, indent=2, ensure_ascii=False) + end)


def nesting_exceeds(value, limit: int) -> bool:
    """Is an array or object of ``value`` more than ``limit`` levels deep? Level by level, no recursion."""
    level = [value] if type(value) in (dict, list) else []
    for _ in range(limit):
        below = []
        for container in level:
            children = container.values() if type(container) is dict else container
            below += [child for child in children if type(child) is dict or type(child) is list]
        if not below:
            return False
        level = below
    return True


__all__ = ["escape_surrogates", "indented", "nesting_exceeds"]
