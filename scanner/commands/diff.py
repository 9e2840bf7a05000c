"""``vfio-scan diff OLD NEW``: what changed between two captures of the same hosts, and whether it broke passthrough.

OLD and NEW are each a snapshot (``collect``), a JSON report (``scan --format json``), a fleet
report (``fleet --format json``), a ``groups --format json`` document, or a directory of such
files (one host each, paired by file name): take one before an upgrade and one after. Snapshots
are scanned here, with ``--device``/``--class`` as their targets, so that two snapshots compare
groups, devices, drivers, kernel, command line and findings; a report knows findings but no
device list, a groups document devices but no findings: what both sides know is compared.

Exit codes: 0 no regression; 1 a regression (scanner/drift/compare.py says which changes are);
2 usage or input error (a bad option, an unreadable or invalid OLD or NEW file); 3 a host of a
directory or fleet could not be read, so the comparison is incomplete.
"""

from __future__ import annotations

from scanner.base.errors import UsageError
from scanner.commands.common import add_plugin_arguments, add_target_arguments, check_writable, parse_targets


def add_arguments(parser) -> None:
    parser.add_argument("old", metavar="OLD", help="before: a snapshot, JSON report, fleet report, groups JSON, "
                                                   "or a directory of them")
    parser.add_argument("new", metavar="NEW", help="after: the same kinds as OLD")
    targets = parser.add_argument_group("device targets (for the scan of each snapshot)")
    add_target_arguments(targets, vfs=False)
    out = parser.add_argument_group("output")
    out.add_argument("--format", choices=("table", "json"), default="table",
                     help="table (default) or json (schemas/diff.schema.json)")
    out.add_argument("-o", "--output", metavar="FILE", help="write the output to FILE instead of stdout")
    add_plugin_arguments(parser)


def run(options) -> int:
    from scanner.commands.common import write_outputs
    from scanner.drift.render import render_json, render_table
    from scanner.drift.result import EXIT_INCOMPLETE, diff_document, exit_code, pair_sides
    from scanner.drift.sides import SideError, read_side

    if options.output is not None:
        check_writable(options.output, "-o")
    scan = SnapshotScanner(options.targets, options.strict_plugins)
    try:
        old = read_side(options.old, scan)
        new = read_side(options.new, scan)
    except SideError as exc:
        raise UsageError(str(exc)) from None
    diffs = pair_sides(old, new)
    document = diff_document(old, new, diffs)
    text = render_json(document) if options.format == "json" else render_table(document)
    if not write_outputs(options.command, [(text, options.output or "-")]):
        return EXIT_INCOMPLETE
    return exit_code(diffs)


class SnapshotScanner:
    """Scans a snapshot host with every loaded rule and the command's targets; plugins load on first use,
    so comparing two reports loads none."""

    def __init__(self, targets, strict_plugins: bool = False):
        self.strict_plugins = strict_plugins
        self.selectors, _ = parse_targets(targets)  # a malformed target is a usage error before anything is read
        self._rules = None

    def __call__(self, host, facts) -> dict:
        from scanner.engine.runner import Scan
        from scanner.engine.scanning import scan_host

        if self._rules is None:
            from scanner.commands.common import load_registry

            self._rules = load_registry(self.strict_plugins).sorted_rules()
        return scan_host(host, self._rules, Scan(), selectors=self.selectors, facts=facts).to_dict()
