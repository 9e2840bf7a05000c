"""``vfio-scan fix``: scan, then write the remediation script for what failed.

It takes every scan option; the default output format is the script. Nothing is changed on
the host: the script is for a person to review, commit and run (``DRY_RUN=0``).
"""

from __future__ import annotations

from scanner.commands import scan


def add_arguments(parser) -> None:
    scan.add_arguments(parser)
    parser.set_defaults(format="script")


def run(args) -> int:
    return scan.run(args)
