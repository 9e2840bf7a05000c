"""``vfio-scan collect``: write a snapshot of this machine (or a tree) for ``scan --snapshot`` elsewhere, later.

It runs the very collector that ``vfio-scan fleet`` pipes to remote hosts (scanner/collector.py),
in-process, then checks the result against schemas/snapshot.schema.json before writing it.
``--print-script`` prints that collector, to run by hand where vfio-scan is not installed:
``ssh host python3 - < collector.py > host.json``.
"""

from __future__ import annotations

import sys

from scanner.commands.common import check_given, check_host_options, check_writable, write_outputs
from scanner.engine.report import EXIT_INCOMPLETE


def add_arguments(parser) -> None:
    parser.add_argument("-o", "--output", metavar="FILE", help="write the snapshot to FILE (default: stdout)")
    parser.add_argument("--root", metavar="DIR", help="snapshot a directory laid out like / (a captured tree) "
                                                      "instead of this machine")
    parser.add_argument("--kernel-log", metavar="FILE", help="kernel log to record (default: dmesg or the journal; "
                                                             "in a --root tree, its var/log/dmesg)")
    parser.add_argument("--print-script", action="store_true",
                        help="print the stand-alone collector (Python 3.6+, stdlib only) instead of running it")


def run(options) -> int:
    from scanner import collector

    root, kernel_log, output = options.hosts.root, options.hosts.kernel_log, options.output
    check_given("-o", output, "a file name (or - for stdout)")
    if options.print_script:
        from scanner.fleet.remote_command import collector_source

        written = write_outputs("collect", [(collector_source().decode("utf-8"), output or "-")])
        return 0 if written else EXIT_INCOMPLETE
    if output is not None:
        check_writable(output, "-o")
    check_host_options(root, kernel_log)  # --root "" would collect this machine instead

    from scanner.host.snapshot import SnapshotError, parse_snapshot

    snapshot = collector.collect(root, kernel_log)
    text = collector.dumps(snapshot)
    try:
        parse_snapshot(text, "the snapshot just collected")
    except SnapshotError as exc:  # a collector bug: say so, write nothing
        print(f"vfio-scan collect: error: {exc}", file=sys.stderr)
        return EXIT_INCOMPLETE
    if not write_outputs("collect", [(text, output or "-")]):  # said on stderr; no part of it is left
        return EXIT_INCOMPLETE
    from scanner.base.terminal_text import for_terminal  # the host's own words: escaped for the terminal

    for note in snapshot["notes"]:
        print(f"vfio-scan collect: warning: {for_terminal(note)}", file=sys.stderr)
    if output and output != "-":
        print(f"vfio-scan collect: wrote {output}: {for_terminal(snapshot['hostname'])}, "
              f"{len(snapshot['entries'])} paths, {len(text) // 1024} KiB", file=sys.stderr)
    return 0
