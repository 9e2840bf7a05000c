"""The ``vfio-scan`` command line: parse arguments, hand over to one command module.

Kept thin on purpose (tox's shape): each subcommand lives in ``scanner/commands/`` and is imported
only when used, so ``vfio-scan --version`` loads nothing but this file. The parsed arguments are
turned into the command's typed options (scanner/commands/options.py) at once: argparse and its
namespace go no further than this module and the commands' ``add_arguments``.

May import: scanner.base, scanner.engine.model, scanner.engine, scanner.commands.
"""

from __future__ import annotations

import importlib
import os
import sys

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
    "vm-config": ("vm_config", "print the ready devices as a VM manager's configuration: qemu, libvirt, proxmox, "
                               "kubevirt, nova, cloud-hypervisor"),
    "collect": ("collect", "write a snapshot of what the rules read on this machine (or a tree), to scan elsewhere later"),
    "fleet": ("fleet", "scan many hosts over ssh (a hosts file or an Ansible inventory) into one merged report"),
    "diff": ("diff", "compare two scans of the same hosts (snapshots, reports, fleet directories): group, device, "
                     "driver, kernel and readiness changes; exit 1 on a regression"),
}


def _parser_class():
    """argparse, but a usage error is one line naming what was wrong, then exit 2.

    Made here rather than at import: the ``--version`` fast path needs no argparse.
    """
    import argparse

    class Formatter(argparse.HelpFormatter):
        # argparse builds a formatter for every option it adds, and its default width comes from
        # shutil.get_terminal_size(): the same width, without importing shutil (and bz2, lzma, ...).
        def __init__(self, prog, indent_increment=2, max_help_position=24, width=None):
            super().__init__(prog, indent_increment, max_help_position,
                             _terminal_columns() - 2 if width is None else width)

    class Parser(argparse.ArgumentParser):
        def __init__(self, *args, formatter_class=Formatter, **kwargs):
            super().__init__(*args, formatter_class=formatter_class, **kwargs)

        def error(self, message):
            self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")

    return Parser


def _terminal_columns() -> int:
    """``shutil.get_terminal_size().columns``: ``$COLUMNS``, else the terminal's width, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
        columns = columns or 80
    return columns


def build_parser(only: str | None = None):
    """The command line, an ``argparse.ArgumentParser``. With ``only``, just that subcommand gets its
    options (the others keep the name and help that top-level help and usage errors show): a run
    imports its own command module and no other."""
    Parser = _parser_class()
    parser = Parser(prog="vfio-scan", description="Is this Linux host ready for VFIO PCI passthrough? "
                    "Checks every link of the chain and shows the evidence and the fix.",
                    epilog="Exit codes: 0 ready, 1 not ready, 2 usage or input error, 3 scan incomplete.")
    parser.add_argument("--version", action="version", version=f"vfio-scan {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name, (module, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if only is None or name == only:
            importlib.import_module(f"scanner.commands.{module}").add_arguments(cmd)
    return parser


def main(argv: list[str] | None = None) -> int:  # annotations are not evaluated: no typing import
    own_process = argv is None  # the console script (or python -m scanner), not a caller in-process
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv in (["--version"], ["-V"]):  # the fast path: no subcommand modules imported
        print(f"vfio-scan {__version__}")
        return 0
    from scanner.base.gc_pause import end_of_startup, pause_gc

    if own_process:
        pause_gc()
    try:
        return _command(argv)
    finally:
        end_of_startup()


def _command(argv: list[str]) -> int:
    from scanner.base.errors import UsageError

    # The subcommand is the first word that is not an option: the top level has no option taking a value.
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    parser = build_parser(only=command if command in COMMANDS else "")
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    from scanner.commands.options import from_namespace

    module = importlib.import_module(f"scanner.commands.{COMMANDS[args.command][0]}")
    try:
        options = from_namespace(args)  # the namespace's only reader: the command gets typed options
        return module.run(options)
    except UsageError as exc:  # may quote a snapshot's own text (its snapshot_version): shown escaped
        from scanner.base.terminal_text import for_terminal

        print(f"vfio-scan {args.command}: error: {for_terminal(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("vfio-scan: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception:  # a bug: its traceback helps to report it, and its exit code must not read as "not ready"
        import traceback

        traceback.print_exc()
        return _cut_short(args.command, "internal error (the traceback above)")
    except BaseException as exc:  # commands return their code: an exit() or a BaseException escaping one is foreign
        from scanner.engine.runner import describe

        return _cut_short(args.command, f"stopped by {describe(exc)} (plugin code outside its guard?)")


def _cut_short(command: str, why: str) -> int:
    """One line saying the command did not finish, and exit 3 (incomplete): never 0 or 1, which are verdicts."""
    from scanner.engine.report import EXIT_INCOMPLETE
    from scanner.base.terminal_text import for_terminal

    print(f"vfio-scan {command}: error: {for_terminal(why)}; the result is incomplete", file=sys.stderr)
    return EXIT_INCOMPLETE
