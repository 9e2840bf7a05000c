"""One plain-text table, laid out exactly as ``tabulate(rows, headers, tablefmt="simple",
maxcolwidths=max_widths)`` (tabulate 0.9) lays out the table report's cells.

Why not tabulate itself: the table report prints one table per subject, and a scan of
thousands of devices prints thousands of them. tabulate's generality (colour codes, wide
characters, many formats, a text wrapper built per cell) was most of the time such a report
took. This module does the one layout the report uses, for its kind of cell: one printable
line each, as scanner/base/terminal_text.py makes every host text (no control character, no line
break, no space but the ASCII one). For such cells the output is tabulate's, byte for byte:

- a cell of a column with a maximum width is wrapped at that width the way textwrap wraps with
  its defaults (words also broken after hyphens); a word longer than a line is cut at what is
  left of the line; a cell that reads as a number is never wrapped;
- a column whose every cell reads as a number (``12``, ``1.50``, ``nan``) is a number column:
  its floats are rewritten as ``format(x, "g")`` does (``1.5``), and it is right-aligned on the
  decimal point, its header too. Every other column is left-aligned, each cell trimmed;
- a column is as wide as its widest line and at least its header's width plus 2;
- the header line, a line of dashes, then the rows: columns two blanks apart, line ends trimmed.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from itertools import zip_longest
from textwrap import TextWrapper

GAP = "  "
HEADER_PADDING = 2
#: How a line of text splits into words and blanks: the pattern textwrap (and so tabulate) uses.
_WORDS = TextWrapper.wordsep_re

# Column kinds, in the order a column widens to the more general one (a bool and an int make an int).
_BOOL, _INT, _FLOAT, _TEXT = range(4)


def _converts(kind, text: str) -> bool:
    try:
        kind(text)
    except ValueError:
        return False
    return True


def _is_words(text: str) -> bool:
    """Blanks between its characters: no int nor float reads it (they allow blanks only around the
    number), which is told without the exception they raise, for the many sentences of a table."""
    return len(text.split(maxsplit=1)) > 1


def _is_number(text: str) -> bool:
    """Reads as a float; of the infinities and NaNs only ``inf``, ``-inf`` and ``nan`` (any case)."""
    if _is_words(text) or not _converts(float, text):
        return False
    value = float(text)
    return not (math.isinf(value) or math.isnan(value)) or text.lower() in ("inf", "-inf", "nan")


def _kind(text: str) -> int:
    if text in ("True", "False"):
        return _BOOL
    if _is_words(text):
        return _TEXT
    if _converts(int, text):
        return _INT
    return _FLOAT if _is_number(text) else _TEXT


def _column_kind(cells) -> int:
    """The most general kind among the cells: text as soon as one cell is text."""
    kind = _BOOL
    for cell in cells:
        kind = max(kind, _kind(cell))
        if kind == _TEXT:
            break
    return kind


def _digits_after_point(text: str) -> int:
    """How many characters follow the decimal point (or the exponent's ``e``); -1 for none."""
    if not _is_number(text) or _converts(int, text):
        return -1
    point = text.rfind(".")
    if point < 0:
        point = text.lower().rfind("e")
    return len(text) - point - 1 if point >= 0 else -1


@lru_cache(maxsize=4096)  # rule titles and many results repeat from one device's table to the next
def _wrapped(text: str, width: int) -> str:
    """``text`` as lines of at most ``width`` characters, joined by newlines; a number as it is."""
    if _is_number(text):
        return text
    if len(text) <= width:  # one line: what textwrap leaves of it is all but the trailing blanks
        return text.rstrip(" ")
    if width > 0 and text.isprintable() and not text.startswith(" ") and not text.endswith(" ") \
            and "  " not in text and "--" not in text:
        lines = _lines_of(width).findall(text)
        if _cover(lines, text):  # else a word is longer than a line: cut, as below
            return "\n".join(lines)
    return _chunks_wrapped(text, width)


#: A letter, as textwrap tells one where it may break a word after a hyphen (``TextWrapper.wordsep_re``).
_LETTER = r"[^\d\W]"
#: Just after a hyphen textwrap breaks a word at: two letters before it (or letter, hyphen, letter), one
#: after it (or letter, hyphen, letter).
_AFTER_BREAKING_HYPHEN = rf"(?:(?<={_LETTER}{{2}}-)|(?<={_LETTER}-{_LETTER}-))(?={_LETTER}-?{_LETTER})"


@lru_cache(maxsize=None)
def _lines_of(width: int):
    """textwrap's greedy line, for a text whose words stand one blank apart and hold no ``--``: the
    longest run of at most ``width`` characters from a word's start to a word's end or to just after
    a hyphen it breaks at (there lines are cut, so that is where its chunks end)."""
    middle = "(?:.{0,%d}[^ ])?" % (width - 2) if width > 1 else ""
    return re.compile(f"[^ ]{middle}(?:(?= |\\Z)|{_AFTER_BREAKING_HYPHEN})", re.DOTALL)


def _cover(lines, text: str) -> bool:
    """The lines are the whole text, in order, one blank or nothing between them: no word was too long."""
    at = 0
    for line in lines:
        if text.startswith(" ", at):
            at += 1
        if not text.startswith(line, at):
            return False
        at += len(line)
    return at == len(text)


def _chunks_wrapped(text: str, width: int) -> str:
    """:func:`_wrapped` for any text: textwrap's chunks (words, blanks, pieces of hyphenated words) laid
    into lines one by one."""
    chunks = [chunk for chunk in _WORDS.split(text) if chunk]
    lines, start, end = [], 0, len(chunks)
    while start < end:
        if lines and not chunks[start].strip():  # a line after the first starts with no blank
            start += 1
        stop, used = start, 0
        while stop < end and used + len(chunks[stop]) <= width:
            used += len(chunks[stop])
            stop += 1
        line = chunks[start:stop]
        if stop < end and len(chunks[stop]) > width:  # fits no line: cut at what is left of this one
            word = chunks[stop]
            line.append(word[:width - used])
            chunks[stop] = word[width - used:]
        if line and not line[-1].strip():
            del line[-1]
        if line:
            lines.append("".join(line))
        start = stop
    return "\n".join(lines)


def _number_cells(cells, kind: int) -> list:
    """A number column's cells as printed, before padding: floats rewritten, then blanks added
    after the ones with fewer digits after the point, so that the points line up."""
    if kind == _FLOAT:
        cells = [cell if cell in ("True", "False") else format(float(cell), "g") for cell in cells]
    points = [_digits_after_point(cell) for cell in cells]
    most = max(points, default=-1)
    return [cell + " " * (most - point) for cell, point in zip(cells, points)]


def simple_table(headers, rows, max_widths) -> str:
    """The table of ``rows`` (sequences of one-line texts, one per header) under ``headers``.

    ``max_widths`` holds, per column, the width its cells are wrapped at, or None for no limit.
    """
    rows = [[cell if width is None else _wrapped(cell, width) for cell, width in zip(row, max_widths)]
            for row in rows]
    multiline = any("\n" in cell for row in rows for cell in row)
    columns = list(zip(*rows)) if rows else [()] * len(headers)
    widths, right, texts = [], [], []
    for header, cells in zip(headers, columns):
        kind = _column_kind(cells)
        is_number = kind in (_INT, _FLOAT)
        cells = _number_cells(cells, kind) if is_number else [cell.strip() for cell in cells]
        lines = [cell.splitlines() for cell in cells]
        widths.append(max([len(header) + HEADER_PADDING] + [len(line) for cell in lines for line in cell]))
        right.append(is_number)
        texts.append(lines)

    line = GAP.join(f"{{:{'>' if r else '<'}{w}}}" for w, r in zip(widths, right)).format
    out = [line(*headers).rstrip(), GAP.join("-" * w for w in widths).rstrip()]
    for cells in zip(*texts):
        if multiline:  # as many lines as the row's tallest cell (none for a row of empty cells, as tabulate)
            out.extend(line(*parts).rstrip() for parts in zip_longest(*cells, fillvalue=""))
        else:
            out.append(line(*(cell[0] if cell else "" for cell in cells)).rstrip())
    return "\n".join(out)
