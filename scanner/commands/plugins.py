"""``vfio-scan plugins``: what loaded, from where, what it provides, and what failed.

A plugin's names and its failure (an exception's own words) are escaped in the table
(scanner/base/terminal_text.py), exact in JSON.
"""

from __future__ import annotations

import json
import sys

from scanner.commands.common import add_plugin_arguments, load_registry
from scanner.base.terminal_text import row_for_terminal


def add_arguments(parser) -> None:
    parser.add_argument("--format", choices=("table", "json"), default="table", help="table (default) or json")
    add_plugin_arguments(parser)


def run(options) -> int:
    from scanner.engine.plugins import check_formats

    registry = load_registry(options.strict_plugins)
    broken = check_formats(registry)  # a format that cannot render is its plugin's failure, shown here
    if options.format == "json":
        print(json.dumps([p.to_dict() for p in registry.plugins], indent=2))
        return _exit_code(options.strict_plugins, broken)
    from tabulate import tabulate

    rows = [row_for_terminal((p.name, p.source, ", ".join(p.rules + p.formats) or "-",
                              f"FAILED: {p.error}" if p.error else "ok")) for p in registry.plugins]
    print(tabulate(rows, headers=("plugin", "from", "provides", "status"), tablefmt="simple",
                   maxcolwidths=[None, 30, 30, 40]))
    return _exit_code(options.strict_plugins, broken)


def _exit_code(strict_plugins: bool, broken) -> int:
    """0; under --strict-plugins, 2 when a format plugin cannot render, as for a plugin that failed to load
    (the listing is printed first: it is what this command is for)."""
    if not (broken and strict_plugins):
        return 0
    from scanner.base.terminal_text import for_terminal

    for info in broken:
        print(for_terminal(f"vfio-scan plugins: error: plugin {info.name!r} ({info.source}) cannot render: "
                           f"{info.error} [--strict-plugins]"), file=sys.stderr)
    return 2
