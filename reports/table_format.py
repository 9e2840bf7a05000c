"""The ``table`` format: one host's tables (reports/table.py), or for many hosts the fleet matrix (reports/matrix.py).

Why a module of its own: the matrix shows each host's own tables under ``-v``, so it builds on
the one-host table; choosing between the two here keeps that the only direction between them.
"""

from __future__ import annotations

from reports.table import WIDTH, render_one


def render(reports, options) -> str:
    if options.get("fleet") or len(reports) > 1:  # many hosts: one hosts x rules matrix
        from reports.matrix import render_fleet

        return render_fleet(reports, options)
    width, color = options.get("width", WIDTH), options.get("color", False)
    return "\n".join(render_one(r, options.get("verbose", False), width, color) for r in reports)
