"""``vfio-scan rules``: every registered rule (built-in and plugin) with its metadata.

A plugin's names and titles are escaped in the table (scanner/base/terminal_text.py), exact in JSON.
"""

from __future__ import annotations

import json

from scanner.commands.common import add_plugin_arguments, load_registry
from scanner.base.terminal_text import row_for_terminal


def add_arguments(parser) -> None:
    parser.add_argument("--format", choices=("table", "json"), default="table", help="table (default) or json")
    add_plugin_arguments(parser)


def run(options) -> int:
    registry = load_registry(options.strict_plugins)
    rules = registry.sorted_rules()
    if options.format == "json":
        print(json.dumps([{"id": r.id, "name": r.name, "scope": r.scope, "severity": r.severity, "title": r.title,
                           "plugin": r.plugin} for r in rules], indent=2))
        return 0
    from tabulate import tabulate

    rows = [row_for_terminal((r.id, r.name, r.scope, r.severity, r.title)) for r in rules]
    print(tabulate(rows, headers=("id", "name", "scope", "severity", "title"), tablefmt="simple"))
    return 0
