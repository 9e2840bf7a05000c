"""``vfio-scan fix``: scan, then write the remediation script for what failed.

It takes every scan option; the default output format is the script. Nothing is changed on
the host: the script is for a person to review, commit and run (``DRY_RUN=0``).

Its exit code answers "was a script written?", not "is the host ready?" (``scan`` answers that):
0 once the script is written, with one line on stderr saying where, for how many findings, and
how many need a person; 3 when the scan was incomplete (a rule errored: the script may miss a
fix) or a write failed; 2 for bad input.
"""

from __future__ import annotations

import sys

from scanner.commands import scan


def add_arguments(parser) -> None:
    scan.add_arguments(parser)
    parser.set_defaults(format="script")


def run(options) -> int:
    return scan.run(options, finished=lambda reports, written, code: _said(reports, written, code))


def _said(reports, written, code: int) -> int:
    from scanner.engine.report import EXIT_INCOMPLETE
    from scanner.base.terminal_text import for_terminal

    scripts = [path for fmt, path in written if fmt == "script"]  # -o (the default format) or --script
    if not scripts:
        return code
    report = reports[0]
    fixes = [f for f in report.findings if f.status in ("fail", "warn") and f.remediation]
    # what the script leaves to a person: a manual step, or one with no action to run (NO AUTOMATED FIX)
    manual = sum(1 for f in fixes for step in f.remediation if step.manual or not step.action)
    where = ", ".join("stdout" if path in (None, "-") else path for path in scripts)
    if fixes:
        what = (f"fixes for {len(fixes)} finding(s)" + (f", {manual} step(s) for a person (NO AUTOMATED FIX)"
                                                        if manual else "")
                + "; a dry run until DRY_RUN=0: review it, then run it as root")
    else:
        what = "nothing to fix: the script only checks the host and changes nothing"
    line = f"vfio-scan fix: wrote {where}: {what}"
    if code == EXIT_INCOMPLETE:
        line += "; the scan was incomplete (a rule errored), so fixes may be missing"
    print(for_terminal(line), file=sys.stderr)
    return EXIT_INCOMPLETE if code == EXIT_INCOMPLETE else 0
