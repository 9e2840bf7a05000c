"""Pieces several subcommands share: the host to read, device targets, plugin loading, writing outputs."""

from __future__ import annotations

import os
import sys

from scanner.cli import UsageError


def add_host_arguments(group, kernel_log: bool = True) -> None:
    """``--root DIR`` (and ``--kernel-log FILE``): what :func:`make_host` reads."""
    group.add_argument("--root", metavar="DIR", help="read a directory laid out like / (a captured tree) instead of "
                                                     "this machine")
    if kernel_log:
        group.add_argument("--kernel-log", metavar="FILE", help="kernel log to use (default: dmesg or the journal; "
                                                                "in a --root tree, its var/log/dmesg)")


def make_host(args):
    """The host a command reads: ``--root DIR`` or this machine; a bad path is a usage error."""
    kernel_log = getattr(args, "kernel_log", None)
    root = getattr(args, "root", None)
    if kernel_log and not os.path.isfile(kernel_log):
        raise UsageError(f"--kernel-log {kernel_log}: no such file")
    if root:
        if not os.path.isdir(root):
            raise UsageError(f"--root {root}: no such directory")
        from scanner.host.tree import TreeHost

        return TreeHost(root, kernel_log_file=kernel_log)
    from scanner.host.live import LiveHost

    return LiveHost(kernel_log_file=kernel_log)


def add_target_arguments(group, vfs: bool = True) -> None:
    group.add_argument("--device", action="append", default=[], metavar="SEL",
                       help="a device to pass through: 0000:01:00.0, 01:00.0, or vendor:device ids such as "
                            "10de:2204 (every match); repeatable")
    group.add_argument("--class", dest="pci_class", action="append", default=[], metavar="PREFIX",
                       help="every device whose class code starts with PREFIX (0300 = VGA, 02 = network); repeatable")
    if vfs:
        group.add_argument("--vfs", action="append", default=[], metavar="PF=N",
                           help="ask for N SR-IOV virtual functions on the physical function PF (0000:3b:00.0=8)")


def parse_targets(args):
    """Selectors from the command line; a malformed one is a usage error naming the accepted forms."""
    from scanner.targets import SelectorError, parse_all

    try:
        return parse_all(args.device, args.pci_class, getattr(args, "vfs", ()))
    except SelectorError as exc:
        raise UsageError(str(exc)) from None


def add_plugin_arguments(parser) -> None:
    parser.add_argument("--strict-plugins", action="store_true",
                        help="a plugin that fails to load is an error (exit 2) instead of a warning")


def load_registry(args):
    """Load plugins; print one warning per failed plugin, or fail under --strict-plugins."""
    from scanner.plugins import load_plugins

    registry = load_plugins()
    for info in registry.failures:
        line = f"plugin {info.name!r} ({info.source}) failed to load: {info.error}"
        if getattr(args, "strict_plugins", False):
            raise UsageError(line + " [--strict-plugins]")
        print(f"vfio-scan: warning: {line}", file=sys.stderr)
    return registry


def check_writable(path: str, option: str) -> None:
    """Refuse before scanning when an output file cannot be written (nothing gathered is lost)."""
    if path == "-":
        return
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"{option} {path}: is a directory")
    if not os.path.isdir(parent):
        raise UsageError(f"{option} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise UsageError(f"{option} {path}: not writable")


def write_output(path: str, text: str) -> None:
    if path in (None, "-"):
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
