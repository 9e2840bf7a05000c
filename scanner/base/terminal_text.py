"""Text read from a host, made safe to print on a terminal: every invisible character shown as an escape.

Why: a scanned host (or its snapshot, or a fleet host's ssh error) supplies host names, driver
names, the kernel command line, ``pci.ids`` names and more. Printed raw, an ESC sequence clears
the screen or retitles the window, a carriage return or newline overwrites or forges a row (a
fake ``READY``), and a bidi override reverses what the reader sees. Human outputs pass each such
field through :func:`for_terminal` before laying it out; JSON keeps the exact text.

What is escaped is what ``str.isprintable()`` rejects, which is what Python's ``repr()`` escapes:
C0 and C1 controls and DEL (tab and newline too: a field is one line), format characters (bidi
embeddings, overrides and isolates, zero-width characters, the BOM, the soft hyphen), line and
paragraph separators, spaces other than the ASCII one, unassigned and private-use code points,
and lone surrogates (bytes decoded with ``surrogateescape``). Letters of every script, accents,
CJK and symbols stay as they are; a backslash stays a backslash.

Standard library only, and ``re`` is already loaded by the time anything prints.
"""

from __future__ import annotations

SHORT_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}

_not_plain_ascii = None  # the compiled pattern, made on first use of the slow path


def escape_character(ch: str) -> str:
    r"""One invisible character as the escape Python's ``repr()`` writes: ``\n``, ``\x1b``, ``\u202e``,
    ``\udcff``, ``\U000e0001``."""
    if ch in SHORT_ESCAPES:
        return SHORT_ESCAPES[ch]
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _escape_run(match) -> str:
    """A run of non-ASCII or control characters, the printable ones (``é``, ``日本``) kept."""
    return "".join(ch if ch.isprintable() else escape_character(ch) for ch in match.group())


def for_terminal(text: str) -> str:
    r"""``text`` with every invisible character escaped: ``"evil\x1b[2J\nREADY"`` becomes the one line
    ``evil\x1b[2J\nREADY`` (backslashes as written). Ordinary text comes back as it is, at the
    cost of one ``str.isprintable()``."""
    global _not_plain_ascii
    if text.isprintable():
        return text
    if _not_plain_ascii is None:
        import re

        _not_plain_ascii = re.compile("[^ -~]+")  # runs outside printable ASCII; only these can need escaping
    return _not_plain_ascii.sub(_escape_run, text)


def row_for_terminal(cells) -> tuple:
    """A table row with every cell escaped, before a table measures the cells' widths."""
    return tuple(for_terminal(cell) for cell in cells)


def lines_for_terminal(text: str) -> str:
    r"""Multi-line text (a rule's docs) with its line breaks kept and everything else escaped:
    only ``\n`` ends a line; a ``\r`` or a vertical tab inside a line is shown as an escape."""
    if text.isprintable():
        return text
    return "\n".join(for_terminal(line) for line in text.split("\n"))
