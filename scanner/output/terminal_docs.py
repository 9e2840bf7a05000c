"""A rule's docs (reStructuredText-flavoured, as docstrings are written) rendered for a terminal.

Why: ``vfio-scan explain`` printed the docstring raw, with ````code````, ``**bold**`` and hard line
breaks made for an 100-column editor. Here each paragraph is reflowed to the terminal's width,
a paragraph that starts with a label (``What:``, ``Why:``, ``Fix, now (phase binding), for
exactly that device::``) gets the label in bold, inline literals lose their backquotes (and are
shown in colour on a colour terminal), bold and emphasis markers go, a literal block (after a
line ending in ``::``) stays exactly as written, indented, and list items keep their bullet.
Text only: what a plugin wrote is escaped for the terminal first (scanner/base/terminal_text.py),
and the styles are added afterwards, so a plugin cannot smuggle its own escape sequences.
"""

from __future__ import annotations

import re
import textwrap
from typing import List

from scanner.base.terminal_text import for_terminal

BOLD, CODE, RESET = "\x1b[1m", "\x1b[36m", "\x1b[0m"
_LITERAL = re.compile(r"``(.+?)``")
_STRONG = re.compile(r"\*\*(.+?)\*\*")
_EMPHASIS = re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])")
_ROLE = re.compile(r":[a-z]+:`([^`]+)`")
_LABEL = re.compile(r"^([A-Z][\w ,()/.-]{0,60}?:)(?=\s)")
_BULLET = re.compile(r"^([-*•]|\d+[.)])\s+")
#: A line that starts a section of its own even without a blank line before it ("Why: ...").
_SECTION = re.compile(r"^(What|Why|How|Fix|Note|Undo)\b[^:]{0,60}:(\s|$)")


def render_docs(text: str, width: int = 80, color: bool = False) -> str:
    """``text`` (already dedented) as terminal lines of at most ``width`` columns (literal blocks excepted)."""
    out: List[str] = []
    for kind, lines in _blocks(text.split("\n")):
        if kind == "literal":
            out += ["    " + for_terminal(line) for line in lines]
        elif kind == "bullet":
            first = _BULLET.match(lines[0])
            mark = first.group(0)
            body = _inline(" ".join([lines[0][len(mark):]] + [line.strip() for line in lines[1:]]), color)
            out += _wrap(body, width, "  " + mark.strip() + " ", "    ")
        else:
            body = " ".join(line.strip() for line in lines)
            literal_follows = body.endswith("::")
            body = body[:-1] if literal_follows else body  # "device::" reads "device:"
            out += _wrap(_inline(body, color, label=True), width, "", "")
        out.append("")
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n"


def _blocks(lines: List[str]):
    """(kind, lines) for each paragraph, bullet item and literal block, in order."""
    block: List[str] = []
    kind, literal_next = "para", False
    index = 0
    while index < len(lines):
        line = lines[index]
        if literal_next and (not line.strip() or line.startswith((" ", "\t"))):
            literal, index = _literal_block(lines, index)
            if literal:
                yield "literal", literal
            literal_next = False
            continue
        if not line.strip():
            if block:
                yield kind, block
            block, kind = [], "para"
        elif (_BULLET.match(line) or _SECTION.match(line)) and not line.startswith(" "):
            if block:
                yield kind, block
            block, kind = [line], "bullet" if _BULLET.match(line) else "para"
        else:
            block.append(line)
        literal_next = literal_next or line.rstrip().endswith("::")
        if line.rstrip().endswith("::"):
            if block:
                yield kind, block
            block, kind = [], "para"
        index += 1
    if block:
        yield kind, block


def _literal_block(lines: List[str], index: int):
    """The indented lines from ``index`` on (blank lines inside kept), dedented; and where it ends."""
    while index < len(lines) and not lines[index].strip():
        index += 1
    body = []
    while index < len(lines) and (not lines[index].strip() or lines[index].startswith((" ", "\t"))):
        body.append(lines[index])
        index += 1
    while body and not body[-1].strip():
        body.pop()
    return textwrap.dedent("\n".join(body)).split("\n") if body else [], index


def _inline(text: str, color: bool, label: bool = False) -> str:
    """Markup turned into style; inside a literal (````*.conf````) nothing is markup."""
    parts = _LITERAL.split(for_terminal(text))  # even: prose, odd: literal
    for i in range(0, len(parts), 2):
        prose = _ROLE.sub(r"\1", parts[i])
        prose = _STRONG.sub(lambda m: _style(m.group(1), BOLD, color), prose)
        parts[i] = _EMPHASIS.sub(r"\1", prose)
    for i in range(1, len(parts), 2):
        parts[i] = _style(parts[i], CODE, color)
    text = "".join(parts)
    if label:
        text = _LABEL.sub(lambda m: _style(m.group(1), BOLD, color), text, count=1)
    return text


def _style(text: str, start: str, color: bool) -> str:
    return f"{start}{text}{RESET}" if color else text


def _wrap(text: str, width: int, first: str, rest: str) -> List[str]:
    """Wrap by visible width: style sequences take no column."""
    if "\x1b[" not in text:
        return textwrap.wrap(text, width, initial_indent=first, subsequent_indent=rest,
                             break_long_words=False, break_on_hyphens=False) or [first.rstrip()]
    lines, current, seen, started = [], first, len(first), False
    for word in text.split(" "):
        visible = len(re.sub(r"\x1b\[[0-9;]*m", "", word))
        if started and seen + 1 + visible > width:
            lines.append(current)
            current, seen = rest + word, len(rest) + visible
        else:
            current, seen = current + (" " if started else "") + word, seen + (1 if started else 0) + visible
        started = True
    lines.append(current)
    return lines
