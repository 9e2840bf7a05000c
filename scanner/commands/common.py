"""Pieces several subcommands share: plugin loading with warnings, and writing outputs."""

from __future__ import annotations

import os
import sys

from scanner.cli import UsageError


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
