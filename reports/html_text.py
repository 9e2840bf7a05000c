"""Host text made safe for the HTML report: visible, and never markup.

Text from a host, a snapshot or a plugin is first made visible as on a terminal (every control,
bidi or invisible character shown as its escape, scanner/base/terminal_text.py), so a right-to-left
override cannot reverse a line and a lone surrogate cannot break the file's UTF-8; then ``&``,
``<``, ``>`` and both quotes become entities, so no name can open a tag or leave an attribute.
"""

from __future__ import annotations

from html import escape

from scanner.base.terminal_text import for_terminal, lines_for_terminal


def esc(text) -> str:
    """One line of host text, for an element's content or a quoted attribute."""
    return escape(for_terminal(str(text if text is not None else "")), quote=True)


def esc_lines(text) -> str:
    """Several lines (a command block, an evidence value), line breaks kept."""
    return escape(lines_for_terminal(str(text if text is not None else "")), quote=True)
