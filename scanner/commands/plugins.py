"""``vfio-scan plugins``: what loaded, from where, what it provides, and what failed."""

from __future__ import annotations

import json

from scanner.commands.common import add_plugin_arguments, load_registry


def add_arguments(parser) -> None:
    parser.add_argument("--format", choices=("table", "json"), default="table", help="table (default) or json")
    add_plugin_arguments(parser)


def run(args) -> int:
    registry = load_registry(args)
    if args.format == "json":
        print(json.dumps([p.to_dict() for p in registry.plugins], indent=2))
        return 0
    from tabulate import tabulate

    rows = [(p.name, p.source, ", ".join(p.rules + p.formats) or "-", f"FAILED: {p.error}" if p.error else "ok")
            for p in registry.plugins]
    print(tabulate(rows, headers=("plugin", "from", "provides", "status"), tablefmt="simple",
                   maxcolwidths=[None, 30, 30, 40]))
    return 0
