"""Whether a human output may use colour, and how wide it may be.

Colour only where a person sees it: stdout is a terminal, ``NO_COLOR`` is unset or empty
(https://no-color.org), and ``TERM`` is not ``dumb``. Width: ``$COLUMNS`` when set, else the
terminal's own width, else 100 (what a file or a pipe gets, so that saved output does not depend
on the window it was made in); never under 60, where nothing lays out readably.
"""

from __future__ import annotations

import os
import sys

DEFAULT_WIDTH = 100
MIN_WIDTH = 60


def use_color(stream=None) -> bool:
    stream = stream if stream is not None else sys.stdout
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def output_width(stream=None) -> int:
    stream = stream if stream is not None else sys.stdout
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(stream.fileno()).columns if stream.isatty() else DEFAULT_WIDTH
        except (AttributeError, ValueError, OSError):
            columns = DEFAULT_WIDTH
    return max(MIN_WIDTH, columns)
