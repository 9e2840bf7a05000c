"""The ``table`` format: one host's tables (reports/table.py), or for many hosts the fleet matrix (reports/matrix.py).

Why a module of its own: the matrix shows each host's own tables under ``-v``, so it builds on
the one-host table; choosing between the two here keeps that the only direction between them.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from reports.table import WIDTH, pieces_one


def pieces(reports, options) -> Iterable[str]:
    """The text of :func:`render` in pieces; the fleet matrix, laid out as a whole, is one piece made here."""
    if options.get("fleet") or len(reports) > 1:  # many hosts: one hosts x rules matrix
        from reports.matrix import render_fleet

        return [render_fleet(reports, options)]
    width, color, verbose = options.get("width", WIDTH), options.get("color", False), options.get("verbose", False)
    return _hosts(reports, verbose, width, color)


def _hosts(reports, verbose: bool, width: int, color: bool) -> Iterator[str]:
    for index, report in enumerate(reports):
        if index:
            yield "\n"
        yield from pieces_one(report, verbose, width, color)


def render(reports, options) -> str:
    return "".join(pieces(reports, options))


render.pieces = pieces  # what scanner/output/formats.py streams to the destination instead of the whole text
