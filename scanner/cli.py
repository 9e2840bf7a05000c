"""The ``vfio-scan`` command line: parse arguments, hand over to one command module.

Kept thin on purpose (tox's shape): each subcommand lives in ``scanner/commands/`` and is imported
only when used, so ``vfio-scan --version`` loads nothing but this file.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from scanner import __version__

EXIT_USAGE = 2

#: subcommand -> (module in scanner.commands, one-line help)
COMMANDS = {
    "scan": ("scan", "scan this machine (or a captured tree) and report readiness for VFIO passthrough"),
    "rules": ("rules", "list the rules: id, name, scope, severity, title"),
    "explain": ("explain", "explain one rule: what it checks, why, how, and how to fix it"),
    "plugins": ("plugins", "list loaded plugins, where they came from, and what failed to load"),
    "groups": ("groups", "list every IOMMU group with its devices, drivers and a passthrough verdict"),
    "fix": ("fix", "write a reviewed remediation script (bash, dry-run by default) for what a scan finds"),
    "qemu-args": ("qemu_args", "print the QEMU -device vfio-pci arguments for devices that are ready to pass through"),
    "collect": ("collect", "write a snapshot of what the rules read on this machine (or a tree), to scan elsewhere later"),
    "fleet": ("fleet", "scan many hosts over ssh (a hosts file or an Ansible inventory) into one merged report"),
}


class UsageError(Exception):
    """Bad input found after parsing (a missing --root, an unknown format...): exit 2, one line."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming what was wrong, then exit 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> Parser:
    parser = Parser(prog="vfio-scan", description="Is this Linux host ready for VFIO PCI passthrough? "
                    "Checks every link of the chain and shows the evidence and the fix.",
                    epilog="Exit codes: 0 ready, 1 not ready, 2 usage or input error, 3 scan incomplete.")
    parser.add_argument("--version", action="version", version=f"vfio-scan {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name, (module, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(f"scanner.commands.{module}").add_arguments(cmd)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv in (["--version"], ["-V"]):  # the fast path: no subcommand modules imported
        print(f"vfio-scan {__version__}")
        return 0
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    module = importlib.import_module(f"scanner.commands.{COMMANDS[args.command][0]}")
    try:
        return module.run(args)
    except UsageError as exc:
        print(f"vfio-scan {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("vfio-scan: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
